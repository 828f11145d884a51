"""Ctrl-C (SIGINT) stops the test suite even after a test ran a Ray Tune search (issue 23, tests/signals.py)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from .conftest import REPO

ray = pytest.importorskip("ray", minversion="2.45")

SESSION = '''
import os
import time

from ray import tune

import ray


def trainable(config):
    tune.report({"score": 1.0})


def test_a_search_starts_ray(tmp_path):
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        tuner = tune.Tuner(trainable, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
        assert not tuner.fit().errors
    finally:
        ray.shutdown()


def test_then_a_long_test():
    open(os.environ["SIGNALS_MARKER"], "w").close()
    time.sleep(300)


def test_never_reached():
    pass
'''


def test_sigint_stops_the_suite_after_ray_tests(tmp_path):
    """A pytest session with this suite's fixture: a test runs a Ray Tune search, the next one sleeps and gets
    SIGINT; the session ends at once as interrupted. (Without the fixture it sleeps on: Tune's SIGINT handler,
    left installed by Tuner.fit, swallows the signal; checked when this test was written.)"""
    (tmp_path / "test_session.py").write_text(textwrap.dedent(SESSION))
    # SIGINT as in a terminal: a process started in the background by a non-interactive shell (e.g. `cmd &` in a
    # script that runs CI) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt, fixture or not
    (tmp_path / "conftest.py").write_text("import signal\n\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
                                         "from tests.signals import restore_signal_handlers  # noqa: E402,F401\n")
    marker = tmp_path / "long_test_started"
    env = dict(os.environ, SIGNALS_MARKER=str(marker), PYTHONUNBUFFERED="1",  # a failure shows how far it got
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
                                str(tmp_path / "test_session.py")], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 420
        while not marker.exists():
            assert process.poll() is None, process.communicate()[0][-3000:]
            assert time.time() < deadline, "the Ray test did not finish in time"
            time.sleep(0.5)
        time.sleep(1.0)  # inside time.sleep of the long test
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)  # the whole session stops, not only the running test
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 2, output[-3000:]  # pytest: interrupted
    assert "KeyboardInterrupt" in output and "1 passed" in output, output[-3000:]

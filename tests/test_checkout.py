"""The checkout guard of tests/checkout.py (issue 23): a test run that leaves a file in the repository fails."""

import os
import subprocess
import sys
import textwrap

from .checkout import checkout_paths
from .conftest import REPO


def test_checkout_paths_sees_new_files_and_skips_bytecode(tmp_path):
    (tmp_path / "kept.txt").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_text("x")
    (tmp_path / "pkg.egg-info").mkdir()
    before = checkout_paths(str(tmp_path))
    assert before == {"kept.txt"}
    (tmp_path / "log" / "SASRec").mkdir(parents=True)
    (tmp_path / "log" / "SASRec" / "run.log").write_text("")
    assert checkout_paths(str(tmp_path)) - before == {"log", os.path.join("log", "SASRec"),
                                                       os.path.join("log", "SASRec", "run.log")}


def test_tests_start_in_their_own_tmp_path(tmp_path):
    assert os.getcwd() == str(tmp_path)


def test_a_session_that_writes_into_the_checkout_fails(tmp_path):
    """A pytest session with the guard whose test writes into the repository (as RecBole did with log/) fails
    and names the path; the same session writing under tmp_path passes."""
    checkout = tmp_path / "checkout"  # the inner sessions guard this folder (TESTS_CHECKOUT_ROOT), not the real one
    checkout.mkdir()
    stray = os.path.join(checkout, "stray_file_of_test_checkout.tmp")
    (tmp_path / "conftest.py").write_text("from tests.checkout import no_files_left_in_the_checkout, "
                                          "work_in_tmp_path  # noqa: F401\n")
    (tmp_path / "test_writer.py").write_text(textwrap.dedent('''
        import os

        def test_writes():
            target = os.environ["TARGET"]
            open(target if os.path.isabs(target) else os.path.join(os.getcwd(), target), "w").close()
        '''))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
               TESTS_CHECKOUT_ROOT=str(checkout))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_writer.py")]
    try:
        bad = subprocess.run(command, cwd=tmp_path, env=dict(env, TARGET=stray), capture_output=True, text=True,
                             timeout=120)
    finally:
        if os.path.exists(stray):
            os.remove(stray)
    assert bad.returncode == 1 and "left 1 new path(s) in the checkout" in bad.stdout, bad.stdout[-2000:]
    assert "stray_file_of_test_checkout.tmp" in bad.stdout
    good = subprocess.run(command, cwd=tmp_path, env=dict(env, TARGET="relative.tmp"), capture_output=True,
                          text=True, timeout=120)
    assert good.returncode == 0, good.stdout[-2000:]

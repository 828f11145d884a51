"""A fixture (autouse in tests/conftest.py) that gives every test back the SIGINT / SIGTERM handlers it started
with: Ray's driver (``ray.init``: SIGTERM) and Ray Tune (``Tuner.fit``: SIGINT, SIGUSR1) install handlers that
outlive ``ray.shutdown()``, after which Ctrl-C (SIGINT) or SIGTERM stopped only the running test and the suite
went on (issue 23). Standard library only, so that a test can use it in a pytest session of its own."""

import signal

import pytest

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    yield
    for sig, handler in saved.items():
        if handler is not None and signal.getsignal(sig) is not handler:  # None: set outside Python, left alone
            signal.signal(sig, handler)

"""Tests leave nothing in the checkout (issue 23): every test works in its own ``tmp_path`` (RecBole writes
``log/``, ``log_tensorboard/`` and ``saved/`` into the working directory), and the session fails if the
repository holds a file or folder at its end that it did not hold at its start (a writer with an absolute path,
or a subprocess started in the repository). Autouse fixtures, re-exported by tests/conftest.py."""

import os

import pytest

# the checkout guarded; TESTS_CHECKOUT_ROOT points a session's guard at another folder (test_checkout.py's inner
# sessions: a stray file in the real checkout, even for a moment, would fail another xdist worker's guard)
REPO = os.environ.get("TESTS_CHECKOUT_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# not the project's files: version control, environments, bytecode and build metadata
SKIPPED = {".git", ".venv", "__pycache__", ".pytest_cache"}


def checkout_paths(root=REPO):
    """Every file and folder under ``root`` (relative paths), without :data:`SKIPPED` and ``*.egg-info``."""
    paths = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED and not d.endswith(".egg-info")]
        relative = os.path.relpath(folder, root)
        for name in dirs + files:
            paths.add(os.path.normpath(os.path.join(relative, name)))
    return paths


@pytest.fixture(scope="session", autouse=True)
def no_files_left_in_the_checkout():
    before = checkout_paths()
    yield
    left = sorted(checkout_paths() - before)
    if left:
        shown = ", ".join(left[:20]) + (f" and {len(left) - 20} more" if len(left) > 20 else "")
        pytest.fail(f"the test run left {len(left)} new path(s) in the checkout {REPO}: {shown}; a test must write "
                    "under tmp_path (RecBole writes log/, log_tensorboard/ and saved/ into the working directory)",
                    pytrace=False)


@pytest.fixture(autouse=True)
def work_in_tmp_path(tmp_path, monkeypatch):
    """Each test starts in its own tmp_path, so RecBole's relative log/ and saved/ folders land there."""
    monkeypatch.chdir(tmp_path)

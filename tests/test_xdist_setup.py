"""The suite's setup under pytest-xdist (pyproject's ``-n auto``): each worker gets its share of the cores."""

from .conftest import share_the_cores


def test_outside_xdist_nothing_changes():
    environ = {}
    assert share_the_cores(environ, cpus=2) is None and environ == {}


def test_two_workers_on_two_cores_use_one_thread_each_and_so_do_their_subprocesses():
    environ = {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2"}
    assert share_the_cores(environ, cpus=2) == 1 and environ["OMP_NUM_THREADS"] == "1"
    environ = {"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "4"}
    assert share_the_cores(environ, cpus=16) == 4 and environ["OMP_NUM_THREADS"] == "4"


def test_a_thread_count_set_by_the_user_is_kept():
    environ = {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "3"}
    assert share_the_cores(environ, cpus=2) == 3 and environ["OMP_NUM_THREADS"] == "3"

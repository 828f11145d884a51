"""Shared fixtures: tiny RecBole configs that train in seconds on 2 CPU cores."""

import os
import sys

import pytest

import recbole_sprint  # noqa: F401  (installs the compatibility shims first)

from .checkout import no_files_left_in_the_checkout, work_in_tmp_path  # noqa: F401  (autouse: nothing in the repo)
from .signals import restore_signal_handlers  # noqa: F401  (autouse: Ray's signal handlers end with their test)

# RecBole's Config reads every --key=value of sys.argv: keep pytest's own options out of it.
sys.argv = sys.argv[:1]


def share_the_cores(environ=os.environ, cpus=None):
    """Under pytest-xdist (pyproject's ``-n``) each worker process gets its share of the cores, for torch here and
    (``OMP_NUM_THREADS``) for the processes its tests start: left alone, two workers on 2 cores ran 4 threads,
    and a training test took 4x as long as alone. Returns the threads a worker uses (None outside
    xdist)."""
    if "PYTEST_XDIST_WORKER" not in environ:
        return None
    from recbole_sprint.tune.local import worker_threads  # the search workers' share, the same rule

    threads = worker_threads(int(environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), cpus)
    environ.setdefault("OMP_NUM_THREADS", str(threads))  # a count the user set is kept
    return int(environ["OMP_NUM_THREADS"])


_threads = share_the_cores()
if _threads:
    import torch

    torch.set_num_threads(_threads)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.path.abspath(os.path.join(REPO, "..", "shared", "datasets"))


def tiny_config(tmp_dir, **overrides):
    """A config dict for a 1-epoch, 1-layer, 16-dimensional run on ml-100k (a few seconds on CPU)."""
    config = {
        "epochs": 1,
        "eval_step": 1,
        "stopping_step": 10,
        "n_layers": 1,
        "n_heads": 2,
        "hidden_size": 16,
        "inner_size": 32,
        "MAX_ITEM_LIST_LENGTH": 10,
        "train_batch_size": 1024,
        "eval_batch_size": 4096,
        "train_neg_sample_args": None,
        "metrics": ["Recall", "NDCG"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "seed": 2020,
        "reproducibility": True,
        "show_progress": False,
        "log_flops": False,
        "checkpoint_dir": os.path.join(str(tmp_dir), "saved"),
        "state": "ERROR",
    }
    config.update(overrides)
    return config


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """``tiny(**overrides)`` -> config dict; RecBole's log/ folders go under tmp_path."""
    monkeypatch.chdir(tmp_path)
    return lambda **overrides: tiny_config(tmp_path, **overrides)


@pytest.fixture
def fused_keep_masks(monkeypatch):
    """The ``keep_mask`` of every call of the models' fused attention made during the test, in order (the calls
    themselves go through)."""
    from recbole_sprint.model import layers

    seen, fused = [], layers.fused_attention

    def recording(*args, **kwargs):
        seen.append(kwargs["keep_mask"])
        return fused(*args, **kwargs)

    monkeypatch.setattr(layers, "fused_attention", recording)
    return seen

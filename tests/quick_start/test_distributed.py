"""Multi-process runs (``run(..., nproc=2)``, RecBole's DDP launch) of plugin models, on the CPU with gloo.

RecBole's own multi-process path needs CUDA and NCCL; the plugin's ``ddp_backend: gloo`` runs it on the CPU,
which is what these tests use. Together they check the plugin config's gloo branch, compat shims 8-11, and
that ``load_data_and_model`` reads a checkpoint written by a multi-process run.
"""

import glob
import os
import socket

import pytest
import torch

from recbole.utils import init_seed

from recbole_sprint.config import Config
from recbole_sprint.config.configurator import ddp_backend
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.quick_start import load_data_and_model, run
from recbole_sprint.utils import get_model, get_trainer
from tests.model.recbole_runs import SMALL_ML100K

# TailCoverage and SpectralCollapse are metrics of the whole recommendation set: with RecBole's sharded
# evaluation, the two processes' values would be averaged and differ from one process's (compat shim 9).
# HistoryShare and TailExposure: the users' histories reach every process (eval_exclude_history is on by default).
METRICS = ["Recall", "NDCG", "TailCoverage", "SpectralCollapse", "HistoryShare", "TailExposure"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return str(sock.getsockname()[1])


@pytest.mark.parametrize(
    "overrides",
    [{}, {"train_mode": "full_sequence", "loss_type": "BCE", "num_negatives": 4}],
    ids=["prefix", "full_sequence"],
)
def test_two_processes_report_the_metrics_of_one_process_on_the_same_checkpoint(tiny, tmp_path, overrides):
    config = tiny(**SMALL_ML100K, **overrides, metrics=METRICS)
    result = run("SASRecSPRINT", "ml-100k", config_dict=config, nproc=2, port=free_port())  # tests may run at once

    assert result is not None, "rank 0 returned no result"
    checkpoints = glob.glob(os.path.join(config["checkpoint_dir"], "SASRecSPRINT-*.pth"))
    assert len(checkpoints) == 1, checkpoints  # one file for both processes (shim 10)
    # The reported test metrics are RecBole's average over the two processes; they equal one process's
    # evaluation of rank 0's checkpoint only if both processes evaluated every user with the same weights
    # (gradients all-reduced) -- and only if the checkpoint written by a 2-process run loads in one process.
    loaded_config, model, _, train_data, _, test_data = load_data_and_model(checkpoints[0])
    assert loaded_config["single_spec"] and loaded_config["local_rank"] == 0
    trainer = get_trainer(loaded_config["MODEL_TYPE"], loaded_config["model"])(loaded_config, model)
    trainer.eval_collector.data_collect(train_data)
    single = trainer.evaluate(test_data, load_best_model=False)

    assert set(result["test_result"]) == {
        "recall@10", "ndcg@10", "tailcoverage@10", "spectralcollapse", "historyshare@10", "tailexposure@10"
    }
    assert loaded_config["eval_exclude_history"] is True
    assert result["test_result"] == pytest.approx(dict(single), abs=1e-12)
    assert 0 < result["test_result"]["tailcoverage@10"] < 1


def _train_and_compare_states(rank, config_dict, queue):
    """One process of a 2-process run: train, then gather both processes' state dicts on rank 0."""
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict={**config_dict, "local_rank": rank})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"] + rank, config["reproducibility"])  # as RecBole: other initial weights per process
    model = get_model("SASRecSPRINT")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, None, saved=False)
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    states = [None, None]
    torch.distributed.all_gather_object(states, state)
    if rank == 0:
        queue.put({name: (states[0][name] - states[1][name]).abs().max().item() for name in state})
    torch.distributed.destroy_process_group()


def test_two_processes_end_training_with_equal_weights_and_power_iteration_vectors(tiny):
    """DDP broadcasts rank 0's weights once and all-reduces gradients; SPRINT's power-iteration vectors are
    buffers it does not reach after the first step (they are rebound, not written in place), so they stay
    equal only because every process updates them from the same weights. Both are checked here."""
    import torch.multiprocessing as mp

    config = tiny(**SMALL_ML100K, epochs=2, train_batch_size=256)
    config.update({"world_size": 2, "nproc": 2, "offset": 0, "ip": "localhost", "port": free_port()})
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_train_and_compare_states, args=(config, queue), nprocs=2, join=True)
    differences = queue.get()

    sprint_buffers = [name for name in differences if name.startswith("sprint.") and name.endswith((".u", ".v"))]
    assert sprint_buffers, sorted(differences)
    assert all(value == 0.0 for value in differences.values()), {k: v for k, v in differences.items() if v}


def test_ddp_backend_defaults_to_gloo_without_cuda_and_rejects_unknown_values():
    assert ddp_backend({"ddp_backend": None}) == ("nccl" if torch.cuda.is_available() else "gloo")
    assert ddp_backend({"ddp_backend": "nccl"}) == "nccl"
    with pytest.raises(ValueError, match=r"ddp_backend must be one of \['nccl', 'gloo'\].*'mpi'"):
        ddp_backend({"ddp_backend": "mpi"})

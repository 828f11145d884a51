"""recbole_sprint.quick_start
###########################

RecBole's quick-start API (``run``, ``run_recbole``, ``objective_function``, ``load_data_and_model``) for
plugin and RecBole models alike: plugin Config, model and trainer lookup, and the compatibility fixes.
"""

import logging
import os
import sys
from collections.abc import MutableMapping
from logging import getLogger

import torch
import torch.distributed as dist
from recbole.data.transform import construct_transform
from recbole.utils import get_environment, get_flops, init_logger, init_seed, set_color

from recbole_sprint.checkpoint import load_checkpoint
from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.utils import get_model, get_trainer, parameter_counts


def run(
    model,
    dataset,
    config_file_list=None,
    config_dict=None,
    saved=True,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
):
    """Train and test ``model`` on ``dataset``; with ``nproc > 1`` RecBole's multi-process (DDP) launch."""
    if nproc == 1 and world_size <= 0:
        return run_recbole_sprint(
            model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict, saved=saved
        )
    if world_size == -1:
        world_size = nproc
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": world_size, "ip": ip, "port": port, "nproc": nproc, "offset": group_offset})
    kwargs = {"config_dict": config_dict, "queue": queue}
    mp.spawn(_run_one_process, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _run_one_process(rank, *args):
    kwargs = args[-1]
    if not isinstance(kwargs, MutableMapping):
        raise ValueError(f"the last argument must be a dict, got {type(kwargs)}")
    kwargs["config_dict"] = kwargs.get("config_dict", {})
    kwargs["config_dict"]["local_rank"] = rank
    run_recbole_sprint(*args[:3], **kwargs)


def run_recbole_sprint(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None):
    """Train with early stopping on the validation metric, reload the best checkpoint, test.

    Returns:
        dict with ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result`` (as
        RecBole's ``run_recbole``) plus ``model``, ``dataset``, ``n_params`` (split into
        ``n_params_embedding`` and ``n_params_non_embedding``), ``train_seconds``, ``eval_exclude_history``
        (whether the metrics ranked only items outside the user's history), ``test_result_unmasked`` (the same
        model's test metrics with the history left in the ranking; ``None`` unless the test was masked and the model
        is sequential) and ``saved_model_file`` (the best checkpoint, for :func:`load_data_and_model`; ``None`` with
        ``saved=False``).
    """
    import time

    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    if config["log_flops"] is not False:
        transform = construct_transform(config)
        flops = get_flops(model, dataset, config["device"], logger, transform)
        logger.info(set_color("FLOPs", "blue") + f": {flops}")

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    start = time.time()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    train_seconds = time.time() - start
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    test_result_unmasked = unmasked_test_result(trainer, test_data, config)

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    if test_result_unmasked is not None:
        logger.info(set_color("test result, history not masked", "yellow") + f": {test_result_unmasked}")

    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "test_result_unmasked": test_result_unmasked,
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_seconds": train_seconds,
        "eval_exclude_history": bool(config["eval_exclude_history"]),  # the ranking protocol of the metrics
        "saved_model_file": os.path.abspath(trainer.saved_model_file) if saved else None,
    }
    result.update(parameter_counts(model))  # n_params_embedding / n_params_non_embedding (benchmark tables)
    if not config["single_spec"]:
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def unmasked_test_result(trainer, test_data, config):
    """The test metrics of the model just tested, ranked again with the user's history left in (the protocol of
    RecBole's sequential evaluation and of the authors' code), or ``None`` where the test was not masked or masking
    is RecBole's own (general models). Costs one more test pass; nothing is trained or reloaded."""
    if not (getattr(trainer, "exclude_history", False) and getattr(trainer, "sequential", False)):
        return None
    trainer.exclude_history = False
    try:
        return trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
    finally:
        trainer.exclude_history = True


def objective_function(config_dict=None, config_file_list=None, saved=True):
    """RecBole's ``HyperTuning`` objective for plugin and RecBole models (no Ray involved)."""
    config = Config(config_dict=config_dict, config_file_list=config_file_list)
    init_seed(config["seed"], config["reproducibility"])
    logging.basicConfig(level=logging.ERROR)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model_name = config["model"]
    model = get_model(model_name)(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, verbose=False, saved=saved)
    test_result = trainer.evaluate(test_data, load_best_model=saved)
    return {
        "model": model_name,
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }


def as_single_process(config):
    """``config`` of a multi-process (DDP) run, turned into this process's single-process config.

    A checkpoint keeps the config of the run that wrote it; with ``single_spec`` False, RecBole's dataloaders
    would ask for a process group that a later, single process does not have.
    """
    if config["single_spec"]:
        return config
    config["single_spec"] = True
    config["local_rank"] = 0
    config["world_size"] = 1
    config["device"] = torch.device("cuda" if config["device"].type == "cuda" and torch.cuda.is_available() else "cpu")
    return config


def load_data_and_model(model_file, trust_pickle=False):
    """Rebuild config, model (with the checkpoint's weights), dataset and dataloaders from a checkpoint.

    The plugin's trainers write checkpoints that load with ``torch.load(weights_only=True)``: weights, and the
    config as plain data (:mod:`recbole_sprint.checkpoint`). A pickled checkpoint (RecBole's own trainer, older
    recbole_sprint) can run code while it loads and is refused unless ``trust_pickle=True``: only for files
    whose origin you trust.

    Raises:
        recbole_sprint.checkpoint.UntrustedCheckpointError: a pickled checkpoint without ``trust_pickle``.
        recbole_sprint.checkpoint.CheckpointError: no such file, or not a checkpoint.

    Returns:
        ``(config, model, dataset, train_data, valid_data, test_data)``
    """
    checkpoint = load_checkpoint(model_file, map_location="cpu", trust_pickle=trust_pickle)  # weights copied to the device
    config = as_single_process(checkpoint["config"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data

"""One trial of a search, shared by both backends; this module does not import Ray.

:func:`run_trial` trains one configuration with the plugin's Config, data, model and trainer, evaluating on
the validation set every ``eval_step`` epochs and stopping with RecBole's own early stopping
(``stopping_step``), then reloads the trial's best checkpoint and tests it. The Ray backend
(:func:`recbole_sprint.tune.search.trainable`) wraps it to report to Ray Tune after every evaluation, with a
checkpoint of the training state (so ASHA can stop it between evaluations, and a resumed search continues it
from its last report); the local backend (:mod:`recbole_sprint.tune.local`) calls it directly.
"""

import contextlib
import json
import logging
import os
import shutil

import torch


@contextlib.contextmanager
def trial_logging():
    """A root logger of the trial's own: RecBole's ``init_logger`` calls ``logging.basicConfig``, which does
    nothing once the root logger has handlers, so a second trial in the same process (the local backend, or
    a Ray actor reused for the next trial) would log into the first trial's file. The handlers RecBole adds
    are closed afterwards and the previous ones restored."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    for handler in saved_handlers:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


@contextlib.contextmanager
def working_directory(path):
    """Run in ``path`` (RecBole writes ``./log/`` and ``./log_tensorboard/`` relative to the working directory;
    a Ray trial already runs in its trial folder, so this changes nothing there)."""
    saved = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(saved)


def _console_to_warnings():
    """Keep RecBole's per-epoch INFO lines in the trial's log file; the console shows the search's progress."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


# Files of a training state (:func:`run_trial`'s ``save_state`` / ``resume_from``)
LAST_STATE = "last.pth"  # RecBole's checkpoint format (model, optimizer, epoch, early-stopping counters)
BEST_MODEL = "best.pth"  # RecBole's best checkpoint so far (what the test reloads)
STATE_JSON = "state.json"  # the best epoch's validation result


def run_trial(params, fixed, trial_dir, gpu_id=None, threads=None, on_evaluation=None, resume_from=None):
    """Train one sample of the search space, then test its best checkpoint.

    Args:
        params: the sampled parameters (``{name: value}``), applied over ``fixed``.
        fixed: the fixed configuration (:func:`recbole_sprint.tune.common.build_fixed_config`).
        trial_dir: the trial's folder: it runs there (RecBole's ``log/``), checkpoints go to ``checkpoints/``.
        gpu_id: RecBole's ``gpu_id`` for the trial (``""``: CPU); ``None`` keeps the configuration's.
        threads: ``torch.set_num_threads`` for the trial; ``None`` keeps torch's setting.
        on_evaluation: ``on_evaluation(epoch, valid_score, save_state)`` after every validation except the one
            that ends training (by ``epochs`` or by early stopping), which is part of the returned result
            instead; ``epoch`` counts from 1; ``save_state(directory)`` writes the training state there.
        resume_from: a directory written by ``save_state``: training continues after that epoch (model,
            optimizer, early-stopping counters and best checkpoint as they were; RecBole's
            ``resume_checkpoint``).

    Returns:
        ``{"valid_score": best, "epoch": last epoch trained, "completed": 1, "best_valid_score": best,
        "valid_<metric>": ..., "test_<metric>": ...}``: ``valid_*`` is the best epoch's validation result,
        ``test_*`` the best checkpoint on the test set (the selection of a search uses the validation only).
    """
    from recbole.utils import init_logger, init_seed

    from recbole_sprint.config import Config, recbole_argv_cleared
    from recbole_sprint.data import create_dataset, data_preparation
    from recbole_sprint.utils import get_model, get_trainer

    if threads:
        torch.set_num_threads(max(1, int(threads)))
    trial_dir = os.path.abspath(trial_dir)
    os.makedirs(trial_dir, exist_ok=True)
    config_dict = dict(fixed)
    config_dict.update(params)
    config_dict.update(checkpoint_dir=os.path.join(trial_dir, "checkpoints"), show_progress=False)  # no clashes
    if gpu_id is not None:
        config_dict["gpu_id"] = gpu_id
    with working_directory(trial_dir), trial_logging():
        with recbole_argv_cleared():
            config = Config(config_dict=config_dict)
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        _console_to_warnings()
        logging.getLogger().info(f"trial parameters: {params}")

        train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

        last_epoch = [0]
        if resume_from is not None:
            last_epoch[0] = _resume(trainer, resume_from)

        def after_evaluation(epoch_idx, valid_score):
            # The evaluation that ends training is returned with the test metrics, not passed on: reported
            # to Ray, it could make the scheduler stop the trial before its test.
            last_epoch[0] = epoch_idx + 1
            ends_training = epoch_idx + 1 >= trainer.epochs or trainer.cur_step > trainer.stopping_step
            if on_evaluation is not None and not ends_training:
                on_evaluation(epoch_idx + 1, float(valid_score), lambda directory: _save(trainer, epoch_idx, directory))

        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, verbose=True, saved=True, show_progress=False, callback_fn=after_evaluation
        )
        test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    final = {"valid_score": float(best_valid_score), "epoch": last_epoch[0], "completed": 1}
    final["best_valid_score"] = float(best_valid_score)
    final.update({f"valid_{k}": float(v) for k, v in (best_valid_result or {}).items()})
    final.update({f"test_{k}": float(v) for k, v in test_result.items()})
    return final


def _save(trainer, epoch_idx, directory):
    """The training state after epoch ``epoch_idx`` (from 0) into ``directory`` (:data:`LAST_STATE` etc.)."""
    os.makedirs(directory, exist_ok=True)
    trainer._save_checkpoint(epoch_idx, verbose=False, saved_model_file=os.path.join(directory, LAST_STATE))
    if os.path.isfile(trainer.saved_model_file):
        shutil.copyfile(trainer.saved_model_file, os.path.join(directory, BEST_MODEL))
    best = {key: float(value) for key, value in (trainer.best_valid_result or {}).items()}
    with open(os.path.join(directory, STATE_JSON), "w") as handle:
        json.dump({"epoch": epoch_idx + 1, "best_valid_result": best}, handle)


def _resume(trainer, directory):
    """Load a state written by :func:`_save`; returns the number of epochs it had trained."""
    best_file = trainer.saved_model_file  # this attempt's best-checkpoint path (resume_checkpoint replaces it)
    trainer.resume_checkpoint(os.path.join(directory, LAST_STATE))
    trainer.saved_model_file = best_file
    if os.path.isfile(os.path.join(directory, BEST_MODEL)):
        os.makedirs(os.path.dirname(best_file) or ".", exist_ok=True)
        shutil.copyfile(os.path.join(directory, BEST_MODEL), best_file)
    with open(os.path.join(directory, STATE_JSON)) as handle:
        state = json.load(handle)
    trainer.best_valid_result = state["best_valid_result"] or None
    logging.getLogger().info(f"resumed after epoch {state['epoch']} from {directory}")
    return state["epoch"]

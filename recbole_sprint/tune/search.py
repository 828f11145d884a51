"""The Ray backend of :mod:`recbole_sprint.tune` (``--backend=ray``, the default): Ray Tune's ``Tuner``.

RecBole's own ``run_hyper.py --tool Ray`` does not work on today's stack (spec recbole.md section 5: it
waits forever for a GPU on CPU machines, returns instead of reporting, reports once per trial so that ASHA
cannot stop anything, picks the best trial on test, and calls the ``tune.report(**kwargs)`` that Ray has
since removed). This driver:

* builds the fixed configuration once, on the driver, with the plugin :class:`~recbole_sprint.config.Config`
  (so plugin and RecBole models alike), draws the trials (:func:`recbole_sprint.tune.common.draw_trials`,
  the local backend's too) and gives Ray a grid over their indices, so ``search_settings.json`` says what
  every trial runs;
* runs :func:`trainable` per trial: :func:`recbole_sprint.tune.trial.run_trial` (shared with the local
  backend) reporting ``valid_score`` (the config's ``valid_metric``) after every evaluation with
  ``tune.report(metrics, checkpoint=...)`` (the training state), so an ASHA scheduler can stop weak trials
  and a resumed search continues an interrupted trial from its last report; the trial's best checkpoint is
  then tested and ``test_*`` reported in one last result;
* trials run in ``--output_dir/search/trial_NNNNN`` (Ray's ``storage_path``: RecBole's log and checkpoints,
  Ray's results and checkpoints), with ``--cpus_per_trial`` and ``--gpus_per_trial`` (fractions: several
  trials share a GPU), on a local Ray or the cluster at ``--address`` (whose nodes must all see
  ``--output_dir``);
* records every finished trial in ``trials.csv`` as it finishes (a trial in it never runs again, even if a
  hard kill came before Ray saved its own state), and chooses the best trial on validation, never on test;
* ``--resume``: ``Tuner.restore`` of the saved experiment: finished trials stay, interrupted ones continue
  from their last checkpoint, failed ones start again.

Only this module imports Ray; the command line (:mod:`recbole_sprint.tune.common`), the local backend and the
rest of the package run without it.
"""

import contextlib
import os
import shutil
import tempfile
import time

import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from recbole_sprint.tune import common
from recbole_sprint.tune.common import (  # noqa: F401  (re-exported: the public names of the Ray driver)
    BEST_JSON,
    BEST_YAML,
    EXPERIMENT_NAME,
    PATH_KEYS,
    REPO_ROOT,
    SETTINGS_FILE,
    TRIALS_CSV,
    SearchError,
    best_row,
    build_fixed_config,
    build_parser,
    main,
    parse_overrides,
    result_row,
    trial_id,
)
from recbole_sprint.tune.trial import run_trial

# Save Ray's experiment state at least every 2 s (Ray's "auto" waits >= 10 s); trials.csv covers the rest.
STATE_SAVE_SECONDS = "2"


# --------------------------------------------------------------------------------------------------
# The trial (runs in a Ray worker process)
# --------------------------------------------------------------------------------------------------
def trainable(config, settings=None, output_dir=None, threads=1):
    """Train trial ``config["trial_index"]`` of the search with :func:`~recbole_sprint.tune.trial.run_trial`,
    reporting to Ray Tune.

    Reports (nothing is returned): ``{"valid_score", "epoch"}`` with a checkpoint of the training state after
    every evaluation but the last and, after training, ``{"valid_score": best, "epoch": last, "completed": 1,
    "best_valid_score", "valid_<metric>"..., "test_<metric>"...}`` (``valid_*``: the best epoch's validation
    result; ``test_*``: the best checkpoint on the test set). ASHA may stop the trial after any report; a
    trial stopped before its final report has no test metrics ("early_stopped" in ``trials.csv``). A trial
    already in ``trials.csv`` (Ray rescheduled it after a hard kill) reports its recorded result again and
    does not train.
    """
    index = config["trial_index"]
    csv_path = os.path.join(output_dir, TRIALS_CSV)
    recorded = common.finished_trials(csv_path, settings["trials"], settings["param_names"]).get(index)
    if recorded is not None:
        tune.report({"valid_score": recorded["best_valid_score"], "epoch": recorded["epochs"], "recorded": 1})
        return

    def report(epoch, score, save_state):
        with tempfile.TemporaryDirectory() as directory:
            save_state(directory)
            tune.report({"valid_score": score, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(directory))

    checkpoint = tune.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_from:
        final = run_trial(
            settings["trials"][index],
            settings["fixed"],
            os.path.join(output_dir, EXPERIMENT_NAME, trial_id(index)),
            gpu_id=",".join(str(i) for i in ray.get_gpu_ids()),  # the GPU(s) Ray gave this trial, or "" (CPU)
            threads=threads,
            on_evaluation=report,
            resume_from=resume_from,
        )
    tune.report(final)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
def trial_row(trial, settings):
    """One CSV row (:func:`~recbole_sprint.tune.common.result_row`) of a finished Ray trial."""
    index = trial.config["trial_index"]
    result = trial.last_result or {}
    if result.get("completed"):
        status, best_valid = "completed", result["best_valid_score"]
    else:  # stopped early by the scheduler: its best reported validation score
        status = "early_stopped"
        best_valid = (trial.metric_analysis.get("valid_score") or {}).get(settings["mode"], float("nan"))
    trial_dir = os.path.join(os.path.dirname(trial.path), trial_id(index))
    return result_row(trial_id(index), status, settings["trials"][index], settings["param_names"], result,
                      best_valid, trial_dir)


class RecordTrials(tune.Callback):
    """Adds each trial to ``trials.csv`` when it finishes (trained to the end or stopped by the scheduler)."""

    def __init__(self, output_dir, settings):
        self.csv_path, self.settings = os.path.join(output_dir, TRIALS_CSV), settings

    def on_trial_complete(self, iteration, trials, trial, **info):
        if (trial.last_result or {}).get("recorded"):  # in trials.csv already (see trainable)
            return
        row = trial_row(trial, self.settings)
        common.record_trial(self.csv_path, self.settings["trials"], self.settings["param_names"],
                            trial.config["trial_index"], row)


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------
def ray_settings(args):
    """The Ray-only settings, validated before Ray starts."""
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise SearchError("--cpus_per_trial must be > 0 and --gpus_per_trial >= 0")
    if args.gpus_per_trial > 0 and not args.address and not torch.cuda.is_available():
        raise SearchError(
            f"--gpus_per_trial={args.gpus_per_trial} but torch sees no CUDA GPU on this machine, where the local "
            "Ray would run the trials; use --gpus_per_trial=0 (CPU), or --address of a cluster with GPUs"
        )
    return {
        "scheduler": args.scheduler,
        "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "max_concurrent_trials": args.max_concurrent_trials,
    }


def start_ray(args, settings):
    """Join ``--address`` or start a local Ray; fail fast if a trial's resources can never be met."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in [REPO_ROOT, os.environ.get("PYTHONPATH", "")] if p)}
    runtime_env = {"env_vars": env}
    if args.address:
        ray.init(address=args.address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=True)
    else:
        ray.init(num_cpus=args.num_cpus, runtime_env=runtime_env, include_dashboard=False)
    resources = ray.cluster_resources()  # the whole cluster's (with --address, the driver may have no GPU)
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
    if settings["gpus_per_trial"] > gpus:
        ray.shutdown()
        raise SearchError(
            f"--gpus_per_trial={settings['gpus_per_trial']} but the Ray cluster has {gpus:g} GPU(s) "
            f"(resources: {resources.get('CPU', 0):g} CPU, {gpus:g} GPU); trials would wait forever. "
            "Use --gpus_per_trial=0 (CPU), or --address of a cluster with GPUs."
        )
    if settings["cpus_per_trial"] > cpus:
        ray.shutdown()
        raise SearchError(f"--cpus_per_trial={settings['cpus_per_trial']} but the Ray cluster has {cpus:g} CPU(s)")


def _trainable(settings, output_dir):
    threads = max(1, int(settings["cpus_per_trial"]))
    resources = {"cpu": settings["cpus_per_trial"], "gpu": settings["gpus_per_trial"]}
    return tune.with_resources(
        tune.with_parameters(trainable, settings=settings, output_dir=output_dir, threads=threads), resources
    )


def _tuner(settings, output_dir, verbose):
    if settings["scheduler"] == "asha":
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=settings["epochs"],
            grace_period=settings["grace_period"],
            reduction_factor=settings["reduction_factor"],
        )
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        _trainable(settings, output_dir),
        param_space={"trial_index": tune.grid_search(list(range(len(settings["trials"]))))},
        tune_config=tune.TuneConfig(
            metric="valid_score",
            mode=settings["mode"],
            scheduler=scheduler,
            num_samples=1,  # the samples are drawn already: one Ray trial per entry of settings["trials"]
            max_concurrent_trials=settings["max_concurrent_trials"],
            trial_name_creator=lambda trial: trial_id(trial.config["trial_index"]),
            trial_dirname_creator=lambda trial: trial_id(trial.config["trial_index"]),
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT_NAME,
            storage_path=output_dir,
            callbacks=[RecordTrials(output_dir, settings)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the last training state is enough
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=verbose,
        ),
    )


def run_search(args, overrides):
    output_dir = os.path.abspath(args.output_dir)
    if args.resume:
        settings = common.load_settings(output_dir, args)
    else:
        settings = common.new_search(args, overrides, output_dir, backend_settings=ray_settings(args))
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", STATE_SAVE_SECONDS)  # read by the driver's controller
    # Ray forces a state snapshot after every trial checkpoint (num_to_keep=1: what makes resume exact) and
    # warns when that happens often; small models checkpoint every few seconds by design.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        start_ray(args, settings)
    except SearchError:
        if not args.resume:  # nothing ran: leave no half-made search behind
            shutil.rmtree(output_dir, ignore_errors=True)
        raise
    started = time.time()
    try:
        if args.resume:
            tuner = tune.Tuner.restore(os.path.join(output_dir, EXPERIMENT_NAME), _trainable(settings, output_dir),
                                       resume_unfinished=True, restart_errored=True)
        else:
            tuner = _tuner(settings, output_dir, args.verbose)
        grid = tuner.fit()
        errors = {}
        for result in grid:
            if result.error is not None:
                errors[result.config["trial_index"]] = os.path.join(result.path, "error.txt")
    finally:
        ray.shutdown()
    done = common.finished_trials(os.path.join(output_dir, TRIALS_CSV), settings["trials"], settings["param_names"])
    not_finished = []
    for index in range(len(settings["trials"])):
        if index in done:
            continue
        why = f"ERROR, see {errors[index]}" if index in errors else "interrupted"
        not_finished.append((trial_id(index), why))
    return common.finish_from_record(output_dir, settings, time.time() - started, not_finished)

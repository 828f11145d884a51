"""The Ray backend of :mod:`recbole_sprint.tune` (``--backend=ray``, the default): Ray Tune 2.6.3.

RecBole's own ``run_hyper.py --tool Ray`` does not work on today's stack (spec recbole.md section 5: it
waits forever for a GPU on CPU machines, returns instead of reporting, reports once per trial so that ASHA
cannot stop anything, and picks the best trial on test). This driver:

* builds the fixed configuration once, on the driver, with the plugin :class:`~recbole_sprint.config.Config`
  (so plugin and RecBole models alike), checks the ``.hyper`` names against it, and ships the merged fixed
  configuration (files + ``--key=value`` overrides, paths made absolute) to the trials as a dict;
* runs :func:`trainable` per sample: :func:`recbole_sprint.tune.trial.run_trial` (shared with the local
  backend) reporting ``valid_score`` (the config's ``valid_metric``) after every evaluation, so an
  :class:`~ray.tune.schedulers.ASHAScheduler` can stop weak trials; the trial's best checkpoint is then
  tested and ``test_*`` reported in one last result;
* chooses the best trial on its best validation score among the trials that trained to the end (never on
  test) and writes, under ``--output_dir``: ``trials.csv`` (every finished trial: parameters, validation and
  test metrics; rewritten as each trial finishes), ``best_config.yaml`` (the fixed config plus the best
  parameters; ``run_recbole_sprint.py --config_files=best_config.yaml`` reruns it), ``best_trial.json``,
  ``search_settings.json`` and Ray's experiment state in ``search/`` (``--resume`` continues from it).

Only this module imports Ray; the command line (:mod:`recbole_sprint.tune.common`), the local backend and the
rest of the package run without it.
"""

import math
import os
import time

import ray
import torch
from ray import tune
from ray.air import session
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator

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
    finish_search,
    load_settings,
    main,
    parse_overrides,
    prepare_settings,
    refuse_existing_search,
    result_row,
    summary_table,
    write_best,
    write_settings,
    write_trials_csv,
)
from recbole_sprint.tune.hyper import HyperFileError, parse_hyper_file
from recbole_sprint.tune.trial import recbole_argv_cleared, run_trial  # noqa: F401


# --------------------------------------------------------------------------------------------------
# Search space
# --------------------------------------------------------------------------------------------------
def ray_search_space(params):
    """Ray Tune domains for parsed ``.hyper`` parameters (``loguniform``: exponentiated natural-log bounds)."""
    space = {}
    for p in params:
        if p.distribution == "choice":
            space[p.name] = tune.choice(list(p.args))
        elif p.distribution == "grid":
            space[p.name] = tune.grid_search(list(p.args))
        elif p.distribution == "uniform":
            space[p.name] = tune.uniform(*p.args)
        elif p.distribution == "quniform":
            space[p.name] = tune.quniform(*p.args)
        elif p.distribution == "loguniform":
            low, high = p.args
            space[p.name] = tune.loguniform(math.exp(low), math.exp(high))
        elif p.distribution == "randint":
            space[p.name] = tune.randint(*p.args)
        else:  # parse_hyper_line only produces the kinds above
            raise HyperFileError(f"{p.source}: unsupported distribution [{p.distribution}]")
    return space


# --------------------------------------------------------------------------------------------------
# The trial (runs in a Ray worker process, inside the trial's own folder)
# --------------------------------------------------------------------------------------------------
def trainable(params, fixed=None, threads=1):
    """Train one sample with :func:`~recbole_sprint.tune.trial.run_trial`, reporting to Ray Tune.

    Reports (``ray.air.session.report``; nothing is returned): ``{"valid_score", "epoch"}`` after every
    evaluation but the last and, after training, ``{"valid_score": best, "epoch": last, "completed": 1,
    "best_valid_score", "valid_<metric>"..., "test_<metric>"...}`` (``valid_*``: the best epoch's validation
    result; ``test_*``: the best checkpoint on the test set). ASHA may stop the trial after any report;
    a trial stopped before its final report has no test metrics ("early_stopped" in ``trials.csv``).
    """
    final = run_trial(
        params,
        fixed or {},
        session.get_trial_dir(),
        gpu_id=",".join(str(i) for i in ray.get_gpu_ids()),  # the GPU(s) Ray gave this trial, or "" (CPU)
        threads=threads,
        on_evaluation=lambda epoch, score: session.report({"valid_score": score, "epoch": epoch}),
    )
    session.report(final)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
def trial_row(trial, param_names, mode):
    """One CSV row (:func:`~recbole_sprint.tune.common.result_row`) of a finished Ray trial."""
    result = trial.last_result or {}
    completed = bool(result.get("completed"))
    if completed:
        best_valid = result["best_valid_score"]
    else:  # stopped early by the scheduler: its best reported validation score
        best_valid = (trial.metric_analysis.get("valid_score") or {}).get(mode, float("nan"))
    status = "completed" if completed else "early_stopped"
    return result_row(trial.trial_id, status, trial.config, param_names, result, best_valid, trial.logdir)


def is_finished(trial):
    """Trained to the end or stopped by the scheduler. A trial cut off by Ctrl+C is TERMINATED too, but
    without ``done`` in its last result; Ray's saved state has it as RUNNING and ``--resume`` reruns it."""
    return trial.status == Trial.TERMINATED and bool((trial.last_result or {}).get("done"))


def finished_rows(trials, param_names, mode):
    return [trial_row(t, param_names, mode) for t in trials if is_finished(t)]


class TrialsCsvCallback(tune.Callback):
    """Rewrites ``trials.csv`` whenever a trial finishes, so an interrupted search keeps its results."""

    def __init__(self, path, param_names, mode):
        self.path, self.param_names, self.mode = path, param_names, mode

    def on_trial_complete(self, iteration, trials, trial, **info):
        rows = finished_rows([t for t in trials if t is not trial], self.param_names, self.mode)
        if (trial.last_result or {}).get("done"):  # its status may not be TERMINATED yet
            rows.append(trial_row(trial, self.param_names, self.mode))
        write_trials_csv(self.path, rows)


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


def run_search(args, overrides):
    output_dir = os.path.abspath(args.output_dir)
    if args.resume:
        settings = load_settings(output_dir, args)
    else:
        ray_part = ray_settings(args)
        settings = prepare_settings(args, overrides)
        settings.update(ray_part)
        refuse_existing_search(output_dir)

    mode, names = settings["mode"], settings["param_names"]
    if settings["scheduler"] == "asha":
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=settings["epochs"],
            grace_period=settings["grace_period"],
            reduction_factor=settings["reduction_factor"],
        )
    else:
        scheduler = FIFOScheduler()
    # Save Ray's experiment state at least every 2 s (Ray's "auto" waits >= 10 s), so that even a hard kill
    # loses at most the trials finished in the last 2 s; Ctrl+C (SIGINT) always saves it before exiting.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    start_ray(args, settings)
    params = None if args.resume else parse_hyper_file(settings["params_file"])  # a resumed search keeps its own
    os.makedirs(output_dir, exist_ok=True)
    if not args.resume:
        write_settings(output_dir, settings)
    threads = max(1, int(settings["cpus_per_trial"]))
    resources = {"cpu": settings["cpus_per_trial"], "gpu": settings["gpus_per_trial"]}
    started = time.time()
    try:
        analysis = tune.run(
            tune.with_parameters(trainable, fixed=settings["fixed"], threads=threads),
            name=EXPERIMENT_NAME,
            storage_path=output_dir,
            config=ray_search_space(params) if params else {},
            num_samples=settings["num_samples"],
            metric="valid_score",
            mode=mode,
            scheduler=scheduler,
            resources_per_trial=resources,
            search_alg=BasicVariantGenerator(
                max_concurrent=settings["max_concurrent_trials"] or 0, random_state=settings["seed"]
            ),
            callbacks=[TrialsCsvCallback(os.path.join(output_dir, TRIALS_CSV), names, mode)],
            resume="LOCAL" if args.resume else False,
            raise_on_failed_trial=False,
            verbose=args.verbose,
        )
        # Read the trials while Ray is up: a trial that never reported fetches its default result from Ray.
        trials = analysis.trials
        rows = finished_rows(trials, names, mode)
        unfinished = [t for t in trials if not is_finished(t)]
    finally:
        ray.shutdown()
    seconds = time.time() - started

    errored = [t for t in unfinished if t.status == Trial.ERROR]
    not_finished = [
        (t.trial_id, f"ERROR, see {t.error_file}" if t.status == Trial.ERROR else "interrupted") for t in unfinished
    ]
    return finish_search(output_dir, settings, rows, seconds, not_finished, len(errored))

"""Ray Tune searches over recbole_sprint and RecBole models (ray[tune] 2.6.3).

RecBole's own ``run_hyper.py --tool Ray`` does not work on today's stack (spec recbole.md section 5: it
waits forever for a GPU on CPU machines, returns instead of reporting, reports once per trial so that ASHA
cannot stop anything, and picks the best trial on test). This driver:

* builds the fixed configuration once, on the driver, with the plugin :class:`~recbole_sprint.config.Config`
  (so plugin and RecBole models alike), checks the ``.hyper`` names against it, and ships the merged fixed
  configuration (files + ``--key=value`` overrides, paths made absolute) to the trials as a dict;
* runs :func:`trainable` per sample: it reports ``valid_score`` (the config's ``valid_metric``) after every
  evaluation, so an :class:`~ray.tune.schedulers.ASHAScheduler` can stop weak trials, then reloads the
  trial's best checkpoint, tests it and reports ``test_*`` in one last result;
* chooses the best trial on its best validation score among the trials that trained to the end (never on
  test) and writes, under ``--output_dir``: ``trials.csv`` (every finished trial: parameters, validation and
  test metrics; rewritten as each trial finishes), ``best_config.yaml`` (the fixed config plus the best
  parameters; ``run_recbole_sprint.py --config_files=best_config.yaml`` reruns it), ``best_trial.json``,
  ``search_settings.json`` and Ray's experiment state in ``search/`` (``--resume`` continues from it).

Only :mod:`recbole_sprint.tune` imports Ray; the rest of the package runs without it.
"""

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import sys
import time

import ray
import torch
import yaml
from ray import tune
from ray.air import session
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator

import recbole_sprint
from recbole_sprint.tune.hyper import HyperFileError, check_names, parse_hyper_file

EXPERIMENT_NAME = "search"  # Ray's experiment folder under --output_dir (fixed, so that --resume finds it)
SETTINGS_FILE = "search_settings.json"
TRIALS_CSV = "trials.csv"
BEST_YAML = "best_config.yaml"
BEST_JSON = "best_trial.json"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(recbole_sprint.__file__)))
# Keys of a RecBole config that hold paths; made absolute because Ray runs each trial in its own folder.
PATH_KEYS = ("data_path", "checkpoint_dir", "dataset_save_path", "dataloaders_save_path")


class SearchError(RuntimeError):
    """A search that cannot start (bad flags, bad resources, nothing to resume, ...)."""


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
# Fixed configuration (driver side)
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def recbole_argv_cleared():
    """RecBole's Config reads every ``--key=value`` of ``sys.argv``: hide the driver's flags (and a Ray
    worker's ``--node-ip-address=...``) while a Config is built; the configuration is passed explicitly."""
    saved = sys.argv
    sys.argv = sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = saved


def parse_overrides(extra_args):
    """RecBole-style ``--key=value`` arguments -> ``{key: "value"}`` (RecBole's Config converts the strings).

    Raises:
        SearchError: an argument that is not ``--key=value``.
    """
    overrides = {}
    for arg in extra_args:
        if not arg.startswith("--") or "=" not in arg:
            raise SearchError(f"unrecognized argument '{arg}': config overrides must look like --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = value
    return overrides


def build_fixed_config(model, dataset, config_files=None, overrides=None):
    """The fixed (not searched) part of every trial's configuration.

    Returns:
        ``(config, fixed)``: the plugin Config built for ``model``/``dataset`` (its keys are the names a
        ``.hyper`` file may search) and the external configuration (config files merged with the overrides,
        converted as RecBole converts them, model and dataset set, path keys absolute) as a plain dict.
    """
    from recbole_sprint.config import Config
    from recbole_sprint.utils import get_model

    try:
        get_model(model)
    except (ValueError, ImportError) as error:  # RecBole's lookup can also fail on an optional import
        raise SearchError(f"--model={model}: no such recbole_sprint or RecBole model ({error})") from None
    config_files = [os.path.abspath(f) for f in (config_files or [])]
    for path in config_files:
        if not os.path.isfile(path):
            raise SearchError(f"--config_files: no such file: {path}")
    with recbole_argv_cleared():
        config = Config(model=model, dataset=dataset, config_file_list=config_files, config_dict=dict(overrides or {}))
    fixed = {key: value for key, value in config.external_config_dict.items()}
    fixed["model"], fixed["dataset"] = config["model"], config["dataset"]
    for key in PATH_KEYS:
        if isinstance(fixed.get(key), str):
            fixed[key] = os.path.abspath(fixed[key])
    if "data_path" not in fixed and config["dataset"] != "ml-100k":  # RecBole's relative default 'dataset/'
        fixed["data_path"] = os.path.dirname(os.path.abspath(config["data_path"]))
    return config, fixed


# --------------------------------------------------------------------------------------------------
# The trial (runs in a Ray worker process, inside the trial's own folder)
# --------------------------------------------------------------------------------------------------
def _console_to_warnings():
    """Keep RecBole's per-epoch INFO lines in the trial's log file; the console shows Ray's table."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


def trainable(params, fixed=None, threads=1):
    """Train one sample: report ``valid_score`` after every evaluation, then test the best checkpoint.

    Reports (``ray.air.session.report``; nothing is returned): ``{"valid_score", "epoch"}`` after every
    evaluation but the last and, after training, ``{"valid_score": best, "epoch": last, "completed": 1,
    "best_valid_score", "valid_<metric>"..., "test_<metric>"...}`` (``valid_*``: the best epoch's validation
    result; ``test_*``: the best checkpoint on the test set). ASHA may stop the trial after any report;
    a trial stopped before its final report has no test metrics ("early_stopped" in ``trials.csv``).
    """
    from recbole.utils import init_logger, init_seed

    from recbole_sprint.config import Config
    from recbole_sprint.data import create_dataset, data_preparation
    from recbole_sprint.utils import get_model, get_trainer

    torch.set_num_threads(max(1, int(threads)))
    config_dict = dict(fixed or {})
    config_dict.update(params)
    config_dict.update(
        checkpoint_dir=os.path.join(session.get_trial_dir(), "checkpoints"),  # per trial: no file clashes
        gpu_id=",".join(str(i) for i in ray.get_gpu_ids()),  # the GPU(s) Ray gave this trial, or "" (CPU)
        show_progress=False,
    )
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

    def report_epoch(epoch_idx, valid_score):
        # The evaluation that ends training is reported once, with the test metrics, after fit(): reported
        # here, it could make the scheduler stop the trial before its test report.
        last_epoch[0] = epoch_idx + 1
        ends_training = epoch_idx + 1 >= trainer.epochs or trainer.cur_step > trainer.stopping_step
        if not ends_training:
            session.report({"valid_score": float(valid_score), "epoch": epoch_idx + 1})

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, verbose=True, saved=True, show_progress=False, callback_fn=report_epoch
    )
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    final = {"valid_score": float(best_valid_score), "epoch": last_epoch[0], "completed": 1}
    final["best_valid_score"] = float(best_valid_score)
    final.update({f"valid_{k}": float(v) for k, v in (best_valid_result or {}).items()})
    final.update({f"test_{k}": float(v) for k, v in test_result.items()})
    session.report(final)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
def trial_row(trial, param_names, mode):
    """One CSV row: trial id, status, searched parameters, best validation score, validation/test metrics."""
    result = trial.last_result or {}
    completed = bool(result.get("completed"))
    if completed:
        best_valid = result["best_valid_score"]
    else:  # stopped early by the scheduler: its best reported validation score
        best_valid = (trial.metric_analysis.get("valid_score") or {}).get(mode, float("nan"))
    row = {
        "trial_id": trial.trial_id,
        "status": "completed" if completed else "early_stopped",
        "epochs": result.get("epoch", 0),
    }
    row.update({name: trial.config.get(name) for name in param_names})
    row["best_valid_score"] = best_valid
    row.update({k: v for k, v in sorted(result.items()) if k.startswith(("valid_", "test_")) and k != "valid_score"})
    row["trial_dir"] = trial.logdir
    return row


def write_trials_csv(path, rows):
    """Write rows (dicts) to ``path`` atomically; the header is the union of the keys in first-seen order."""
    header = []
    for row in rows:
        header += [key for key in row if key not in header]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


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


def best_row(rows, mode):
    """The completed trial with the best validation score (``mode`` "max" or "min"); ``None`` if none."""
    completed = [r for r in rows if r["status"] == "completed"]
    if not completed:
        return None
    pick = max if mode == "max" else min
    return pick(completed, key=lambda r: r["best_valid_score"])


def write_best(output_dir, settings, row):
    params = {name: row[name] for name in settings["param_names"]}
    best_config = dict(settings["fixed"])
    best_config.update(params)
    with open(os.path.join(output_dir, BEST_YAML), "w") as handle:
        handle.write(
            f"# Best of the search in {output_dir} (trial {row['trial_id']}, chosen on validation "
            f"{settings['valid_metric']} = {row['best_valid_score']:.6g}).\n"
            f"# Rerun: python run_recbole_sprint.py --model={settings['model']} --dataset={settings['dataset']} "
            f"--config_files={os.path.join(output_dir, BEST_YAML)}\n"
        )
        yaml.safe_dump(_plain(best_config), handle, sort_keys=False)
    with open(os.path.join(output_dir, BEST_JSON), "w") as handle:
        json.dump(_plain(row), handle, indent=2)


def _plain(value):
    """Config values as yaml/json-safe builtins (tuples -> lists, numpy scalars -> numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def summary_table(rows, settings, best):
    """The final table: one line per finished trial, best first (validation order), best marked."""
    import pandas as pd

    if not rows:
        return "no finished trials"
    frame = pd.DataFrame(rows).drop(columns=["trial_dir"])
    frame = frame.sort_values("best_valid_score", ascending=settings["mode"] == "min", kind="stable")
    frame.insert(0, "best", ["*" if best is not None and t == best["trial_id"] else "" for t in frame["trial_id"]])
    keep = ["best", "trial_id", "status", "epochs"] + settings["param_names"] + ["best_valid_score"]
    keep += [c for c in frame.columns if c.startswith("test_")]
    return frame[keep].to_string(index=False, float_format=lambda x: f"{x:.4g}")


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m recbole_sprint.tune",
        description="Ray Tune search over a recbole_sprint or RecBole model. Any other --key=value is a fixed "
        "config override (as for run_recbole_sprint.py).",
    )
    parser.add_argument("--model", "-m", default=None, help="model name (plugin or RecBole)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name")
    parser.add_argument("--config_files", default=None, help="fixed config yaml files, separated by spaces")
    parser.add_argument("--params_file", default=None, help="search space in RecBole's .hyper format")
    parser.add_argument("--num_samples", type=int, default=8, help="number of sampled configurations")
    parser.add_argument("--max_epochs", type=int, default=None, help="epochs per trial (sets config 'epochs')")
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default="asha", help="trial scheduler")
    parser.add_argument("--grace_period", type=int, default=1, help="ASHA: epochs before a trial can be stopped")
    parser.add_argument("--reduction_factor", type=float, default=2, help="ASHA: keep 1/reduction_factor per rung")
    parser.add_argument("--cpus_per_trial", type=float, default=1, help="CPUs per trial")
    parser.add_argument("--gpus_per_trial", type=float, default=0, help="GPUs per trial (fractions allowed)")
    parser.add_argument("--max_concurrent_trials", type=int, default=None, help="at most this many trials at once")
    parser.add_argument("--address", default=None, help="join this Ray cluster (e.g. 'auto' or host:6379)")
    parser.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--output_dir", default="tune_results", help="results and Ray's experiment state")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted search in --output_dir with its saved settings (other search flags are "
        "ignored; --address and --num_cpus apply)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the parameter sampling")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2, 3], help="Ray's verbosity")
    return parser


def prepare_settings(args, overrides):
    """Validate everything that can be validated before Ray starts; returns the settings of the search."""
    if not args.model or not args.dataset or not args.params_file:
        raise SearchError("--model, --dataset and --params_file are required (unless --resume)")
    if args.num_samples < 1:
        raise SearchError(f"--num_samples must be >= 1, got {args.num_samples}")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise SearchError("--cpus_per_trial must be > 0 and --gpus_per_trial >= 0")
    if args.gpus_per_trial > 0 and not args.address and not torch.cuda.is_available():
        raise SearchError(
            f"--gpus_per_trial={args.gpus_per_trial} but torch sees no CUDA GPU on this machine, where the local "
            "Ray would run the trials; use --gpus_per_trial=0 (CPU), or --address of a cluster with GPUs"
        )
    params = parse_hyper_file(os.path.abspath(args.params_file))
    if args.max_epochs is not None:
        overrides["epochs"] = str(args.max_epochs)
    config_files = args.config_files.split() if args.config_files else []
    config, fixed = build_fixed_config(args.model, args.dataset, config_files, overrides)
    check_names(params, config.final_config_dict.keys(), f"{config['model']} on {config['dataset']}")
    for p in params:
        if p.name in ("model", "dataset"):
            raise SearchError(f"{p.source}: [{p.name}] cannot be searched; run one search per {p.name}")
    clash = [p.name for p in params if p.name in fixed and p.name not in ("model", "dataset")]
    if clash:
        print(f"note: searched parameters override their fixed values: {', '.join(clash)}")
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "params_file": os.path.abspath(args.params_file),
        "param_names": [p.name for p in params],
        "fixed": _plain(fixed),
        "valid_metric": config["valid_metric"],
        "mode": "max" if config["valid_metric_bigger"] else "min",
        "epochs": int(config["epochs"]),
        "num_samples": args.num_samples,
        "n_trials": args.num_samples * math.prod(len(p.args) for p in params if p.distribution == "grid"),
        "scheduler": args.scheduler,
        "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "max_concurrent_trials": args.max_concurrent_trials,
        "seed": args.seed,
    }


def load_settings(output_dir, args):
    path = os.path.join(output_dir, SETTINGS_FILE)
    if not os.path.isfile(path) or not os.path.isdir(os.path.join(output_dir, EXPERIMENT_NAME)):
        raise SearchError(f"--resume: no search to resume in {output_dir} (no {SETTINGS_FILE} / {EXPERIMENT_NAME}/)")
    with open(path) as handle:
        settings = json.load(handle)
    for flag in ("model", "dataset"):
        given = getattr(args, flag)
        if given and given != settings[flag]:
            raise SearchError(f"--resume: the search in {output_dir} is for --{flag}={settings[flag]}, not {given}")
    return settings


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
        settings = prepare_settings(args, overrides)
        if os.path.isdir(os.path.join(output_dir, EXPERIMENT_NAME)):
            raise SearchError(
                f"{output_dir} already holds a search: pass --resume to continue it, or another --output_dir"
            )

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
        with open(os.path.join(output_dir, SETTINGS_FILE), "w") as handle:
            json.dump(settings, handle, indent=2)
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

    write_trials_csv(os.path.join(output_dir, TRIALS_CSV), rows)
    best = best_row(rows, mode)
    if best is not None:
        write_best(output_dir, settings, best)
    errored = [t for t in unfinished if t.status == Trial.ERROR]
    n_left = settings["n_trials"] - len(rows) - len(errored)  # interrupted or never started

    print(f"\n== search {settings['model']} on {settings['dataset']}: {len(rows)} of {settings['n_trials']} "
          f"trial(s) finished, {seconds:.1f} s; validation metric {settings['valid_metric']} ({mode}) ==")
    print(summary_table(rows, settings, best))
    for trial in unfinished:
        status = f"ERROR, see {trial.error_file}" if trial.status == Trial.ERROR else "interrupted"
        print(f"not finished: {trial.trial_id} ({status})")
    if best is not None:
        tests = ", ".join(f"{k[5:]}={best[k]:.4f}" for k in best if k.startswith("test_"))
        print(f"best trial {best['trial_id']} (chosen on validation {settings['valid_metric']}="
              f"{best['best_valid_score']:.4f}): test {tests}")
        print(f"best config: {os.path.join(output_dir, BEST_YAML)}")
    print(f"all trials: {os.path.join(output_dir, TRIALS_CSV)}")
    if errored:
        print(f"{len(errored)} trial(s) failed (--resume does not rerun failed trials; see their error files)")
    if n_left > 0:
        resume = f"python -m recbole_sprint.tune --output_dir={output_dir} --resume"
        print(f"{n_left} trial(s) left; continue with: {resume}")
    return 1 if errored or n_left > 0 else 0


def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    try:
        overrides = parse_overrides(extra)
        return run_search(args, overrides)
    except (SearchError, HyperFileError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

"""The command line and what both search backends share; this module does not import Ray.

``python -m recbole_sprint.tune ... --backend {ray,local}``:

* ``ray`` (default): :mod:`recbole_sprint.tune.search`, Ray Tune (``Tuner``), trials in parallel (fractional
  GPUs allowed), ASHA, a Ray cluster with ``--address``.
* ``local``: :mod:`recbole_sprint.tune.local`, without Ray, for machines where Ray cannot be installed (the
  offline GPU machine: Python 3.12 without Ray, packages carried in at most 64 MiB per call, while Ray's wheel
  alone is 75.6 MiB): the trials one after another in this process, or with ``--workers=N`` in N worker
  processes at once (sharing the config's device).

What they share, all here or in :mod:`recbole_sprint.tune.trial`: the fixed configuration
(:func:`build_fixed_config`); the trials, drawn once from the ``.hyper`` space by :func:`draw_trials` and
saved in ``search_settings.json`` (so a given ``--seed`` means the same trials under either backend, and a
resumed search the same trials); each trial's training and test (:func:`recbole_sprint.tune.trial.run_trial`);
``trials.csv``, the record of finished trials (:func:`record_trial`: a trial in it never runs again); the
choice of the best trial on its best validation score among the trials that trained to the end (never on
test); and the outputs under ``--output_dir``: ``trials.csv``, ``best_config.yaml``, ``best_trial.json``,
``search_settings.json`` and ``search/`` (each trial's folder ``search/trial_NNNNN``, plus Ray's experiment
state). ``--resume`` continues an interrupted search.
"""

import argparse
import collections
import contextlib
import csv
import itertools
import json
import math
import os
import random

import numpy as np
import yaml

import recbole_sprint
from recbole_sprint.tune.hyper import HyperFileError, check_names, parse_hyper_file

EXPERIMENT_NAME = "search"  # under --output_dir: Ray's experiment folder, or the local trials' folders
SETTINGS_FILE = "search_settings.json"
TRIALS_CSV = "trials.csv"
BEST_YAML = "best_config.yaml"
BEST_JSON = "best_trial.json"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(recbole_sprint.__file__)))
# Keys of a RecBole config that hold paths; made absolute because each trial runs in its own folder.
PATH_KEYS = ("data_path", "checkpoint_dir", "dataset_save_path", "dataloaders_save_path")
BACKENDS = ("ray", "local")
# Options of the Ray backend only, with their defaults there (the parser's default is None: "not given").
RAY_OPTIONS = {
    "scheduler": "asha",
    "grace_period": 1,
    "reduction_factor": 2,
    "cpus_per_trial": 1,
    "gpus_per_trial": 0,
    "max_concurrent_trials": None,
    "address": None,
    "num_cpus": None,
    "verbose": 1,
}


class SearchError(RuntimeError):
    """A search that cannot start (bad flags, bad resources, nothing to resume, ...)."""


# --------------------------------------------------------------------------------------------------
# Fixed configuration
# --------------------------------------------------------------------------------------------------
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


def spec_fixed_config(spec_path, label, dataset):
    """``(model class, config)`` of a benchmark spec's run of the model entry ``label`` on ``dataset``.

    The config is the one the benchmark trains that cell with (protocol, dataset and entry config, first seed)
    plus its ``data_path``; a search under it tunes exactly what the benchmark then runs.

    Raises:
        SearchError: no such spec, entry or dataset (naming the allowed values), or a spec whose sizes / sweep
            give this entry several runs per seed (which one to tune would be ambiguous).
    """
    from recbole_sprint.benchmark.spec import SpecError, load_spec

    if not os.path.isfile(spec_path):
        raise SearchError(f"--spec: no such file: {spec_path}")
    try:
        spec = load_spec(spec_path)
    except SpecError as error:
        raise SearchError(f"--spec: {error}") from None
    labels = [entry for entry, _ in spec.models]
    if label not in labels:
        raise SearchError(f"--model={label}: no model entry labelled so in spec {spec.name}; choose from "
                          f"{', '.join(labels)}")
    datasets = [name for name, _, _ in spec.datasets]
    if dataset not in datasets:
        raise SearchError(f"--dataset={dataset}: not in spec {spec.name}; choose from {', '.join(datasets)}")
    cells = [c for c in spec.cells() if c.model == label and c.dataset == dataset and c.seed == spec.seeds[0]]
    if len(cells) != 1:
        raise SearchError(f"--spec: spec {spec.name} has {len(cells)} runs of {label} on {dataset} per seed (sizes "
                          "or sweep); tune under a spec with one")
    config = dict(cells[0].config)
    if cells[0].data_path is not None:
        config["data_path"] = cells[0].data_path
    return cells[0].model_name, config


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
    from recbole_sprint.config import recbole_argv_cleared  # (imports torch: not at --help)

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
# The trials: drawn once, here, for either backend
# --------------------------------------------------------------------------------------------------
def _draw(param, rng):
    """One value of a random ``.hyper`` parameter (``loguniform``: natural-log bounds, as RecBole's hyperopt)."""
    kind, args = param.distribution, param.args
    if kind == "choice":
        return args[int(rng.choice(np.arange(0, len(args)), size=1)[0])]
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1], size=1)[0])
    if kind == "quniform":  # bounds moved inward to multiples of q, then rounded to a multiple of q
        low, high, q = args
        value = rng.uniform(np.ceil(low / q) * q, np.floor(high / q) * q, size=1)[0]
        return float(np.round(np.divide(value, q)) * q)
    if kind == "loguniform":  # log-uniform between exp(low) and exp(high)
        low, high = math.exp(args[0]), math.exp(args[1])
        exponent = rng.uniform(np.log(low) / np.log(10), np.log(high) / np.log(10), size=1)
        return float((10 ** exponent)[0])
    if kind == "randint":  # upper bound exclusive
        return int(rng.integers(args[0], args[1], size=1)[0])
    raise HyperFileError(f"{param.source}: unsupported distribution [{kind}]")


def draw_trials(params, num_samples, seed):
    """The trials of a search: ``num_samples`` times every combination of the ``grid`` parameters, the other
    parameters drawn per trial with ``numpy.random.default_rng(seed)`` (grid parameters in name order, the
    first varying fastest; random parameters drawn in file order). Both backends run exactly these trials
    (Ray as a grid over their indices), so one ``--seed`` gives one search whatever the backend.

    Returns:
        a list of ``{name: value}`` in ``.hyper`` order (plain Python values).
    """
    rng = np.random.default_rng(seed)
    grids = sorted((p for p in params if p.distribution == "grid"), key=lambda p: p.name)[::-1]
    randoms = [p for p in params if p.distribution != "grid"]
    trials = []
    for _ in range(num_samples):
        for combination in itertools.product(*(p.args for p in grids)):  # the last of `grids` varies fastest
            values = dict(zip((p.name for p in grids), combination))
            values.update((p.name, _draw(p, rng)) for p in randoms)
            trials.append(_plain({p.name: values[p.name] for p in params}))
    return trials


def trial_id(index):
    """A trial's id and folder name (``search/trial_NNNNN``), the same under both backends."""
    return f"trial_{index:05d}"


# --------------------------------------------------------------------------------------------------
# trials.csv: the record of finished trials (a trial in it never runs again)
# --------------------------------------------------------------------------------------------------
def _param_key(params, names):
    """What identifies a trial: its parameter values, as ``trials.csv`` writes them."""
    return tuple(str(params[name]) for name in names)


def _number(text):
    """A CSV cell as a number; an empty cell (a metric the trial has not, e.g. an early-stopped trial's test
    metrics) as ``None``, which the CSV writer writes back empty."""
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def finished_trials(csv_path, trials, names):
    """The trials of ``trials`` already in ``trials.csv``: ``{index: row}``, the row with its parameters as
    planned (typed) and its numbers as numbers.

    Raises:
        SearchError: a row that is none of the search's trials (trials.csv edited by hand?).
    """
    if not os.path.isfile(csv_path):
        return {}
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    waiting = collections.defaultdict(list)  # parameter values -> trial indices (a sample may repeat)
    for index, params in enumerate(trials):
        waiting[_param_key(params, names)].append(index)
    done = {}
    for number, row in enumerate(rows, start=2):
        indices = waiting[tuple(row[name] for name in names)]
        if not indices:
            raise SearchError(f"{csv_path}:{number}: a trial that is not one of this search's (parameters "
                              f"{ {name: row[name] for name in names} }); was the file edited?")
        # its own index where the trial id names one (trials finish in any order)
        index = next((i for i in indices if trial_id(i) == row.get("trial_id")), indices[0])
        indices.remove(index)
        typed = {key: value if key in ("trial_id", "status", "trial_dir") else _number(value)
                 for key, value in row.items() if key not in names}
        typed.update(trials[index])
        done[index] = {key: typed[key] for key in row}  # the CSV's column order
    return done


@contextlib.contextmanager
def _locked(csv_path):
    """An exclusive lock on ``trials.csv`` (a ``.lock`` file beside it) while a process rewrites it."""
    import fcntl  # POSIX only; imported here so that the module imports everywhere

    with open(csv_path + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_trial(csv_path, trials, names, index, row):
    """Add trial ``index``'s row to ``trials.csv`` and rewrite it in trial order, under the lock: other
    processes (local workers) may have added theirs since. A trial already recorded keeps its first row."""
    with _locked(csv_path):
        done = finished_trials(csv_path, trials, names)
        done.setdefault(index, row)
        write_trials_csv(csv_path, [done[i] for i in sorted(done)])


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
def result_row(trial_id, status, params, param_names, result, best_valid, trial_dir):
    """One CSV row: trial id, status, searched parameters, best validation score, validation/test metrics
    (``result``: the last result of :func:`~recbole_sprint.tune.trial.run_trial` or of a Ray report)."""
    row = {"trial_id": trial_id, "status": status, "epochs": result.get("epoch", 0)}
    row.update({name: params.get(name) for name in param_names})
    row["best_valid_score"] = best_valid
    row.update({k: v for k, v in sorted(result.items()) if k.startswith(("valid_", "test_")) and k != "valid_score"})
    row["trial_dir"] = trial_dir
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


def finish_search(output_dir, settings, rows, seconds, not_finished, n_failed):
    """Write ``trials.csv`` and the best trial's files, print the summary; the exit status (1: trials failed
    or left).

    Args:
        rows: the finished trials' rows (:func:`result_row`).
        not_finished: ``(trial_id, why)`` for each trial that failed or was interrupted.
        n_failed: how many of them failed (the others were interrupted).
    """
    mode = settings["mode"]
    write_trials_csv(os.path.join(output_dir, TRIALS_CSV), rows)
    best = best_row(rows, mode)
    if best is not None:
        write_best(output_dir, settings, best)
    n_left = settings["n_trials"] - len(rows) - n_failed  # interrupted or never started

    print(f"\n== search {settings['model']} on {settings['dataset']}: {len(rows)} of {settings['n_trials']} "
          f"trial(s) finished, {seconds:.1f} s; validation metric {settings['valid_metric']} ({mode}) ==")
    print(summary_table(rows, settings, best))
    for trial_id, why in not_finished:
        print(f"not finished: {trial_id} ({why})")
    if best is not None:
        tests = ", ".join(f"{k[5:]}={best[k]:.4f}" for k in best if k.startswith("test_"))
        print(f"best trial {best['trial_id']} (chosen on validation {settings['valid_metric']}="
              f"{best['best_valid_score']:.4f}): test {tests}")
        print(f"best config: {os.path.join(output_dir, BEST_YAML)}")
    print(f"all trials: {os.path.join(output_dir, TRIALS_CSV)}")
    if n_failed:
        print(f"{n_failed} trial(s) failed (--resume runs them again; see their error files)")
    if n_left > 0:
        resume = f"python -m recbole_sprint.tune --output_dir={output_dir} --resume"
        print(f"{n_left} trial(s) left; continue with: {resume}")
    return 1 if n_failed or n_left > 0 else 0


def finish_from_record(output_dir, settings, seconds, not_finished):
    """:func:`finish_search` over every trial in ``trials.csv`` (whichever process or session ran it).

    Args:
        not_finished: ``(trial_id, why)`` of the trials of this run that failed (``why`` starts with
            "ERROR") or were interrupted.
    """
    done = finished_trials(os.path.join(output_dir, TRIALS_CSV), settings["trials"], settings["param_names"])
    rows = [done[index] for index in sorted(done)]
    n_failed = sum(why.startswith("ERROR") for _, why in not_finished)
    return finish_search(output_dir, settings, rows, seconds, not_finished, n_failed)


# --------------------------------------------------------------------------------------------------
# Command line and settings
# --------------------------------------------------------------------------------------------------
TUNE_EPILOG = """Each trial is one training run of the model with the trial's parameters over the fixed config, so a
search costs about num_samples x grid combinations x one run (README: what each command costs): e.g. 8 trials of
SASRecSPRINT on ml-100k at its defaults take about 50 minutes on 2 CPU cores with --backend=local (8 x the main job);
--max_epochs=5 (or a smaller model, --hidden_size=16 --n_layers=1) makes each trial short.
Outputs in --output_dir: trials.csv, best_config.yaml, best_trial.json, search_settings.json and search/ (each
trial's folder with RecBole's log and checkpoints)."""


def build_parser():
    from recbole_sprint.cli import HelpFormatter, models_epilog

    parser = argparse.ArgumentParser(
        prog="python -m recbole_sprint.tune",
        description="Hyperparameter search over a recbole_sprint or RecBole model, with Ray Tune (--backend=ray)\n"
        "or one trial after another in this process (--backend=local, no Ray). Any other --key=value is a fixed\n"
        "config override (as for run_recbole_sprint.py).\n\n"
        "  python -m recbole_sprint.tune --backend=local --model=SASRecSPRINT --dataset=ml-100k \\\n"
        "      --params_file=properties/hyper/sprint.hyper --num_samples=4 --max_epochs=5 --output_dir=outputs/tune/x",
        epilog=TUNE_EPILOG + "\n\n" + models_epilog(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", "-m", default=None, help="model name (plugin or RecBole)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name")
    parser.add_argument("--config_files", default=None, help="fixed config yaml files, separated by spaces")
    parser.add_argument(
        "--spec",
        default=None,
        help="a benchmark spec (YAML): the fixed config is the spec's run of --model (a model entry's label, the "
        "table row) on --dataset with its first seed: the benchmark's protocol, data_path and the entry's own "
        "config; --config_files and --key=value still override it",
    )
    parser.add_argument("--params_file", default=None, help="search space in RecBole's .hyper format")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="ray (default): Ray Tune, trials in parallel, ASHA; local: the trials one after another in this "
        "process without Ray, each with RecBole's early stopping (stopping_step) and the config's "
        "gpu_id/use_gpu; it refuses the options marked 'ray'. With --resume: the search's own backend",
    )
    parser.add_argument("--num_samples", type=int, default=8, help="number of sampled configurations")
    parser.add_argument("--max_epochs", type=int, default=None, help="epochs per trial (sets config 'epochs')")
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default=None, help="ray: trial scheduler (asha)")
    parser.add_argument("--grace_period", type=int, default=None, help="ray: ASHA epochs before a stop (1)")
    parser.add_argument("--reduction_factor", type=float, default=None, help="ray: ASHA keeps 1/this per rung (2)")
    parser.add_argument("--cpus_per_trial", type=float, default=None, help="ray: CPUs per trial (1)")
    parser.add_argument("--gpus_per_trial", type=float, default=None, help="ray: GPUs per trial, fractions allowed (0)")
    parser.add_argument("--max_concurrent_trials", type=int, default=None, help="ray: at most this many trials at once")
    parser.add_argument("--address", default=None, help="ray: join this Ray cluster (e.g. 'auto' or host:6379)")
    parser.add_argument("--num_cpus", type=int, default=None, help="ray: CPUs of the local Ray (default: all)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local: run the trials in this many worker processes at once, all on the config's device (one GPU "
        "shared: small models leave most of it idle); each worker's output goes to search/worker_<i>.log (1)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # "i/n": one worker of --workers=n
    parser.add_argument("--output_dir", default="tune_results", help="results and the search's state")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted search in --output_dir with its saved settings and trials (other search "
        "flags are ignored; --address, --num_cpus and --workers apply): the trials in trials.csv do not run "
        "again, failed ones do; Ray continues an interrupted trial from its last checkpoint",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the parameter sampling")
    parser.add_argument("--verbose", type=int, default=None, choices=[0, 1, 2, 3], help="ray: Ray's verbosity (1)")
    from recbole_sprint.cli import DEBUG_HELP

    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return parser


def saved_backend(output_dir):
    """The backend of the search saved in ``output_dir`` (``None``: no saved search)."""
    path = os.path.join(os.path.abspath(output_dir), SETTINGS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle).get("backend", "ray")  # settings written before --backend existed: Ray


def resolve_backend(args):
    """Set ``args.backend`` (given, or the resumed search's, or "ray") and the Ray options' defaults.

    Raises:
        SearchError: a Ray-only option with the local backend, or --resume with another backend.
    """
    backend = args.backend
    if args.resume:
        saved = saved_backend(args.output_dir)
        if saved is not None and backend is not None and backend != saved:
            raise SearchError(f"--resume: the search in {os.path.abspath(args.output_dir)} runs with "
                              f"--backend={saved}, not {backend}; leave --backend out to resume it")
        backend = backend or saved
    backend = backend or "ray"
    given = [f"--{name}" for name in RAY_OPTIONS if getattr(args, name) is not None]
    if backend == "local" and given:
        raise SearchError(
            f"--backend=local does not take {', '.join(given)} (Ray-only: the local backend runs one trial at a "
            "time in this process, each until RecBole's early stopping, on the device of the config's "
            "gpu_id/use_gpu); drop them or use --backend=ray"
        )
    if backend == "ray" and args.workers is not None:
        raise SearchError("--workers is an option of --backend=local (Ray runs trials in parallel itself: "
                          "--max_concurrent_trials, --gpus_per_trial)")
    if args.workers is not None and args.workers < 1:
        raise SearchError(f"--workers must be >= 1, got {args.workers}")
    if backend == "ray":
        for name, default in RAY_OPTIONS.items():
            if getattr(args, name) is None:
                setattr(args, name, default)
    args.backend = backend
    return backend


def prepare_settings(args, overrides):
    """Validate the search (flags, space, fixed config) before anything starts; returns its settings."""
    if not args.model or not args.dataset or not args.params_file:
        raise SearchError("--model, --dataset and --params_file are required (unless --resume)")
    if args.num_samples < 1:
        raise SearchError(f"--num_samples must be >= 1, got {args.num_samples}")
    params = parse_hyper_file(os.path.abspath(args.params_file))
    if args.max_epochs is not None:
        overrides["epochs"] = str(args.max_epochs)
    config_files = args.config_files.split() if args.config_files else []
    model = args.model
    if args.spec:
        model, spec_config = spec_fixed_config(args.spec, args.model, args.dataset)
        overrides = {**spec_config, **overrides}
    config, fixed = build_fixed_config(model, args.dataset, config_files, overrides)
    check_names(params, config.final_config_dict.keys(), f"{config['model']} on {config['dataset']}")
    for p in params:
        if p.name in ("model", "dataset"):
            raise SearchError(f"{p.source}: [{p.name}] cannot be searched; run one search per {p.name}")
    clash = [p.name for p in params if p.name in fixed and p.name not in ("model", "dataset")]
    if clash:
        print(f"note: searched parameters override their fixed values: {', '.join(clash)}")
    return {
        "backend": args.backend,
        "model": config["model"],
        "dataset": config["dataset"],
        "params_file": os.path.abspath(args.params_file),
        "spec": os.path.abspath(args.spec) if args.spec else None,
        "spec_model": args.model if args.spec else None,  # the spec entry's label (the model class is "model")
        "param_names": [p.name for p in params],
        "fixed": _plain(fixed),
        "valid_metric": config["valid_metric"],
        "mode": "max" if config["valid_metric_bigger"] else "min",
        "epochs": int(config["epochs"]),
        "stopping_step": int(config["stopping_step"]),  # the model's yaml < config files < --key=value
        "num_samples": args.num_samples,
        "n_trials": args.num_samples * math.prod(len(p.args) for p in params if p.distribution == "grid"),
        "seed": args.seed,
    }


def new_search(args, overrides, output_dir, backend_settings=None):
    """Validate a new search, draw its trials and save its settings (``search_settings.json``, ``search/``).

    A search without ``--seed`` draws one and saves it, so that ``--resume`` (and a rerun with that ``--seed``,
    under either backend) has the same trials. ``backend_settings`` (the Ray options) are saved with it.
    """
    settings = prepare_settings(args, overrides)
    settings.update(backend_settings or {})
    refuse_existing_search(output_dir)
    if settings["seed"] is None:
        settings["seed"] = random.SystemRandom().randrange(2**32)
        print(f"note: sampling seed {settings['seed']} (saved in {SETTINGS_FILE})")
    settings["trials"] = draw_trials(parse_hyper_file(settings["params_file"]), settings["num_samples"],
                                     settings["seed"])
    os.makedirs(os.path.join(output_dir, EXPERIMENT_NAME))
    write_settings(output_dir, settings)
    return settings


def refuse_existing_search(output_dir):
    """A new search must not write over another one (``--resume`` continues it)."""
    if os.path.isdir(os.path.join(output_dir, EXPERIMENT_NAME)):
        raise SearchError(
            f"{output_dir} already holds a search: pass --resume to continue it, or another --output_dir"
        )


def load_settings(output_dir, args):
    path = os.path.join(output_dir, SETTINGS_FILE)
    if not os.path.isfile(path) or not os.path.isdir(os.path.join(output_dir, EXPERIMENT_NAME)):
        raise SearchError(f"--resume: no search to resume in {output_dir} (no {SETTINGS_FILE} / {EXPERIMENT_NAME}/)")
    with open(path) as handle:
        settings = json.load(handle)
    if "trials" not in settings:
        raise SearchError(f"--resume: {path} lists no trials (a search started by an older recbole_sprint, whose "
                          "Ray backend drew them itself); start a new search in another --output_dir")
    for flag in ("model", "dataset"):
        given = getattr(args, flag)
        if given and given not in (settings[flag], settings.get(f"spec_{flag}")):
            raise SearchError(f"--resume: the search in {output_dir} is for --{flag}={settings[flag]}, not {given}")
    return settings


def write_settings(output_dir, settings):
    with open(os.path.join(output_dir, SETTINGS_FILE), "w") as handle:
        json.dump(settings, handle, indent=2)


MIN_RAY = (2, 45)  # pyproject.toml: Tuner, tune.report(metrics, checkpoint=...), tune.get_checkpoint


def _version_tuple(version):
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def backend_runner(backend):
    """The ``run(args, overrides)`` of a backend, imported only when used (only "ray" imports Ray)."""
    if backend == "local":
        from recbole_sprint.tune.local import run_local_search

        return run_local_search
    try:
        import ray

        if _version_tuple(ray.__version__) < MIN_RAY:
            raise ImportError(f"Ray {ray.__version__} is installed, older than {'.'.join(map(str, MIN_RAY))}")
        from recbole_sprint.tune.search import run_search
    except ImportError as error:
        raise SearchError(
            f"--backend=ray needs Ray Tune (ray[tune]>=2.45, README's install), which cannot be imported here "
            f"({error}); use --backend=local to run the trials one after another without Ray"
        ) from None
    return run_search


def main(argv=None):
    from recbole_sprint.cli import one_line_data_warnings, report, user_errors

    args, extra = build_parser().parse_known_args(argv)
    one_line_data_warnings()
    try:
        overrides = parse_overrides(extra)
        run = backend_runner(resolve_backend(args))
        return run(args, overrides)
    except (SearchError, HyperFileError, *user_errors()) as error:  # a wrong input: one line, or --debug's traceback
        if args.debug:
            raise
        return report(error)

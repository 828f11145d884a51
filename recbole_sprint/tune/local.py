"""The local backend of :mod:`recbole_sprint.tune` (``--backend=local``): no Ray.

For machines where Ray 2.6.3 (RecBole 1.2.1's pin) cannot be installed, e.g. Python 3.12. The trials run one
after another in this process, each with :func:`recbole_sprint.tune.trial.run_trial` (the Ray backend's
trial): it trains until ``epochs`` or RecBole's own early stopping (``stopping_step`` evaluations without
improvement), then tests its best checkpoint. There is no ASHA: no trial is stopped for being weaker than
the others. The device is the configuration's (``gpu_id``, ``use_gpu``; ``device: cpu`` forces the CPU), so
on a GPU machine the trials use the GPU.

The search space means what it means under Ray: :func:`local_trials` draws the same trials, in the same
order, as Ray's ``BasicVariantGenerator`` with the same ``--seed`` (``num_samples`` x grid combinations).
The trials are drawn once and saved in ``search_settings.json`` (a search without ``--seed`` saves the seed
it drew); ``--resume`` runs the saved trials whose parameter values are not yet in ``trials.csv``, so an
interrupted local search loses at most the trial it was running. Outputs as for Ray, with each trial's folder
(RecBole's log, checkpoints, ``error.txt`` if it failed) in ``search/trial_NNNNN``.

``--workers=N`` runs the trials in N processes at once (``python -m recbole_sprint.tune --resume
--worker=i/N``, trials ``i, i+N, ...``; output in ``search/worker_<i>.log``), all on the config's device: a GPU
that one small model leaves mostly idle trains several at once. Each worker adds its finished trial to
``trials.csv`` under a file lock; this process reports the trials as they finish and writes the best trial's
files at the end. Resume works as without workers, with any number of them.
"""

import collections
import contextlib
import csv
import gc
import itertools
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback

import numpy as np
import torch

from recbole_sprint.tune import common, trial
from recbole_sprint.tune.hyper import HyperFileError, parse_hyper_file


# --------------------------------------------------------------------------------------------------
# Search space: Ray's BasicVariantGenerator, without Ray
# --------------------------------------------------------------------------------------------------
def _draw(param, rng):
    """One value of a random ``.hyper`` parameter, drawn as Ray's domain of
    :func:`recbole_sprint.tune.search.ray_search_space` draws it (``size=1``, same generator calls)."""
    kind, args = param.distribution, param.args
    if kind == "choice":
        return args[int(rng.choice(np.arange(0, len(args)), size=1)[0])]
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1], size=1)[0])
    if kind == "quniform":  # Ray: bounds moved inward to multiples of q, then rounded to a multiple of q
        low, high, q = args
        value = rng.uniform(np.ceil(low / q) * q, np.floor(high / q) * q, size=1)[0]
        return float(np.round(np.divide(value, q)) * q)
    if kind == "loguniform":  # Ray: tune.loguniform(exp(ln_low), exp(ln_high)), base 10
        low, high = math.exp(args[0]), math.exp(args[1])
        exponent = rng.uniform(np.log(low) / np.log(10), np.log(high) / np.log(10), size=1)
        return float((10 ** exponent)[0])
    if kind == "randint":  # upper bound exclusive
        return int(rng.integers(args[0], args[1], size=1)[0])
    raise HyperFileError(f"{param.source}: unsupported distribution [{kind}]")


def local_trials(params, num_samples, seed):
    """The trials of a search: ``num_samples`` times every combination of the ``grid`` parameters, the other
    parameters drawn per trial with ``numpy.random.default_rng(seed)``, as Ray Tune 2.6.3's
    ``BasicVariantGenerator(random_state=seed)``: the same values in the same order (grid parameters in
    name order, the first varying fastest; random parameters drawn in file order).

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
            trials.append(common._plain({p.name: values[p.name] for p in params}))
    return trials


# --------------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------------
def _param_key(params, names):
    """What identifies a trial: its parameter values, as ``trials.csv`` writes them."""
    return tuple(str(params[name]) for name in names)


def _number(text):
    try:
        return int(text)
    except ValueError:
        return float(text) if text != "" else float("nan")


def finished_trials(csv_path, trials, names):
    """The trials of ``trials`` already in ``trials.csv``: ``{index: row}``, the row with its parameters as
    planned (typed) and its numbers as numbers.

    Raises:
        common.SearchError: a row that is none of the search's trials (trials.csv edited by hand?).
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
            raise common.SearchError(f"{csv_path}:{number}: a trial that is not one of this search's (parameters "
                                     f"{ {name: row[name] for name in names} }); was the file edited?")
        # its own index where the trial id names one (workers finish repeated samples in any order)
        index = next((i for i in indices if _trial_id(i) == row.get("trial_id")), indices[0])
        indices.remove(index)
        typed = {key: value if key in ("trial_id", "status", "trial_dir") else _number(value)
                 for key, value in row.items() if key not in names}
        typed.update(trials[index])
        done[index] = {key: typed[key] for key in row}  # the CSV's column order
    return done


def _trial_id(index):
    return f"trial_{index:05d}"


@contextlib.contextmanager
def _locked(csv_path):
    """An exclusive lock on ``trials.csv`` (a ``.lock`` file beside it) while a worker rewrites it."""
    import fcntl  # POSIX only; imported here so that the module imports everywhere

    with open(csv_path + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_trial(csv_path, trials, names, index, row):
    """Add trial ``index``'s row to ``trials.csv`` and rewrite it in trial order, under the lock: other workers
    may have added theirs since this one started."""
    with _locked(csv_path):
        done = finished_trials(csv_path, trials, names)
        done[index] = row
        common.write_trials_csv(csv_path, [done[i] for i in sorted(done)])


def parse_worker(text):
    """``"i/n"`` (the hidden ``--worker`` flag) -> ``(i, n)``."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise common.SearchError(f"--worker must be i/n with 0 <= i < n, got {text!r}")
    return i, n


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------
def local_gpu_id(fixed):
    """``gpu_id`` for the trials: ``""`` (CPU) where the config says ``use_gpu: False`` or ``device: cpu``
    (RecBole 1.2.1 itself reads neither), else ``None``: the config's ``gpu_id`` (RecBole: CUDA when available
    and ``gpu_id`` is not empty)."""
    if fixed.get("use_gpu") in (False, "False", "false", 0) or str(fixed.get("device", "")).startswith("cpu"):
        return ""
    return None


def local_device(fixed):
    gpu_id = local_gpu_id(fixed)
    if gpu_id is None:
        gpu_id = str(fixed.get("gpu_id", "0"))
    return f"cuda (gpu_id {gpu_id})" if gpu_id and torch.cuda.is_available() else "cpu"


def new_local_settings(args, overrides, output_dir):
    settings = common.prepare_settings(args, overrides)
    common.refuse_existing_search(output_dir)
    if settings["seed"] is None:  # saved, so that --resume (and a rerun with --seed) draws the same trials
        settings["seed"] = random.SystemRandom().randrange(2**32)
        print(f"note: sampling seed {settings['seed']} (saved in {common.SETTINGS_FILE})")
    settings["trials"] = local_trials(parse_hyper_file(settings["params_file"]), settings["num_samples"],
                                      settings["seed"])
    os.makedirs(os.path.join(output_dir, common.EXPERIMENT_NAME))
    common.write_settings(output_dir, settings)
    return settings


def run_local_search(args, overrides):
    output_dir = os.path.abspath(args.output_dir)
    worker = parse_worker(args.worker) if args.worker else None
    if args.resume:
        settings = common.load_settings(output_dir, args)
    else:
        settings = new_local_settings(args, overrides, output_dir)
    names, trials, fixed = settings["param_names"], settings["trials"], settings["fixed"]
    csv_path = os.path.join(output_dir, common.TRIALS_CSV)
    done = finished_trials(csv_path, trials, names)
    todo = [index for index in range(len(trials)) if index not in done]
    if worker is not None:
        todo = [index for index in todo if index % worker[1] == worker[0]]
    n_workers = 1 if worker is not None else min(args.workers or 1, max(len(todo), 1))  # none idle
    how = "one after another"
    if worker is not None:
        how = f"one after another in worker {worker[0]} of {worker[1]}"
    elif n_workers > 1:
        how = f"in {n_workers} worker processes at once"
    print(f"local search: {len(todo)} of {len(trials)} trial(s) to run, {how} on "
          f"{local_device(fixed)}; no ASHA: each trains up to {settings['epochs']} epochs with RecBole's early "
          f"stopping (stopping_step={fixed.get('stopping_step', 10)}), then tests its best checkpoint", flush=True)
    if n_workers > 1:
        return run_workers(output_dir, settings, todo, n_workers)
    return run_trials(output_dir, settings, todo, worker)


def run_trials(output_dir, settings, todo, worker):
    """Run the trials ``todo`` one after another in this process; record each as it finishes. Without
    ``worker``, finish the search (summary, best trial); a worker only says what it ran."""
    names, trials, fixed = settings["param_names"], settings["trials"], settings["fixed"]
    csv_path = os.path.join(output_dir, common.TRIALS_CSV)
    gpu_id = local_gpu_id(fixed)

    started = time.time()
    not_finished, running = [], None
    try:
        for number, index in enumerate(todo, start=1):
            params = trials[index]
            running = trial_id = _trial_id(index)
            trial_dir = os.path.join(output_dir, common.EXPERIMENT_NAME, trial_id)
            if os.path.isdir(trial_dir):  # an attempt that did not finish: start afresh
                shutil.rmtree(trial_dir)
            trial_started = time.time()
            try:
                result = trial.run_trial(params, fixed, trial_dir, gpu_id=gpu_id)
            except Exception:  # as Ray's raise_on_failed_trial=False: note it, go on with the next trial
                error_file = os.path.join(trial_dir, "error.txt")
                os.makedirs(trial_dir, exist_ok=True)
                with open(error_file, "w") as handle:
                    handle.write(traceback.format_exc())
                not_finished.append((trial_id, f"ERROR, see {error_file}"))
                print(f"[{number}/{len(todo)}] {trial_id} {params}: failed, see {error_file}", flush=True)
                running = None
                continue
            finally:
                gc.collect()  # the trial's model, data and optimizer, before the next trial's
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            row = common.result_row(trial_id, "completed", params, names, result, result["best_valid_score"],
                                    trial_dir)
            running = None
            record_trial(csv_path, trials, names, index, row)
            print(f"[{number}/{len(todo)}] {trial_id} {params}: best valid {settings['valid_metric']}="
                  f"{row['best_valid_score']:.4f}, {row['epochs']} epoch(s), "
                  f"{time.time() - trial_started:.1f} s", flush=True)
    except KeyboardInterrupt:
        if running is not None:
            not_finished.append((running, "interrupted"))
    if worker is not None:
        print(f"worker {worker[0]} of {worker[1]}: {len(todo) - len(not_finished)} of {len(todo)} trial(s) "
              f"finished, {time.time() - started:.1f} s", flush=True)
        return 1 if not_finished else 0
    return finish_local_search(output_dir, settings, started, not_finished)


def finish_local_search(output_dir, settings, started, not_finished):
    """Summary and best trial from ``trials.csv`` (every finished trial, whichever process ran it)."""
    done = finished_trials(os.path.join(output_dir, common.TRIALS_CSV), settings["trials"], settings["param_names"])
    rows = [done[index] for index in sorted(done)]
    n_failed = sum(why.startswith("ERROR") for _, why in not_finished)
    return common.finish_search(output_dir, settings, rows, time.time() - started, not_finished, n_failed)


def run_workers(output_dir, settings, todo, n_workers, poll_s=5.0):
    """Run ``todo`` in ``n_workers`` processes (``--resume --worker=i/n``), report each trial as it lands in
    ``trials.csv``, then finish the search. Ctrl+C stops the workers (each records what it finished)."""
    names, trials = settings["param_names"], settings["trials"]
    csv_path = os.path.join(output_dir, common.TRIALS_CSV)
    search_dir = os.path.join(output_dir, common.EXPERIMENT_NAME)
    env = dict(os.environ)  # the workers import this package from where this process did
    env["PYTHONPATH"] = os.pathsep.join(p for p in (common.REPO_ROOT, env.get("PYTHONPATH")) if p)
    started = time.time()
    workers = []
    for i in range(n_workers):
        log_path = os.path.join(search_dir, f"worker_{i}.log")
        with open(log_path, "a") as log:
            command = [sys.executable, "-m", "recbole_sprint.tune", f"--output_dir={output_dir}", "--resume",
                       f"--worker={i}/{n_workers}"]
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
        print(f"worker {i}: trials {[_trial_id(t) for t in todo if t % n_workers == i]}, output {log_path}",
              flush=True)
    reported = set(finished_trials(csv_path, trials, names))
    try:
        while True:
            running = any(worker.poll() is None for worker in workers)
            done = finished_trials(csv_path, trials, names)  # no lock to read: trials.csv is replaced atomically
            for index in sorted(set(done) - reported):
                row = done[index]
                print(f"{_trial_id(index)} {trials[index]}: best valid {settings['valid_metric']}="
                      f"{row['best_valid_score']:.4f}, {row['epochs']} epoch(s) "
                      f"({time.time() - started:.0f} s into the search)", flush=True)
            reported |= set(done)
            if not running:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for worker in workers:
            worker.send_signal(signal.SIGINT)
        for worker in workers:
            worker.wait()
    done = finished_trials(csv_path, trials, names)
    not_finished = []
    for index in todo:
        if index in done:
            continue
        error_file = os.path.join(search_dir, _trial_id(index), "error.txt")
        why = f"ERROR, see {error_file}" if os.path.isfile(error_file) else "interrupted or not started"
        not_finished.append((_trial_id(index), why))
    return finish_local_search(output_dir, settings, started, not_finished)

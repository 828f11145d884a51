"""The local backend of :mod:`recbole_sprint.tune` (``--backend=local``): no Ray.

For machines where Ray cannot be installed. The one this project has is its offline GPU machine (Python 3.12,
no Ray, packages carried in as wheels of at most 64 MiB per call; Ray 2.60's own wheel is 75.6 MiB, plus
pyarrow and the rest of ``ray[tune]``). Anywhere Ray installs, a laptop included (Ray starts a local cluster
of its own), the Ray backend does everything this one does and more (ASHA, clusters, resume inside a trial).

The trials are the search's (:func:`recbole_sprint.tune.common.draw_trials`, saved in
``search_settings.json``); each runs with :func:`recbole_sprint.tune.trial.run_trial`, the Ray backend's trial:
it trains until ``epochs`` or RecBole's own early stopping (``stopping_step`` evaluations without
improvement), then tests its best checkpoint. There is no ASHA: no trial is stopped for being weaker than the
others. The device is the configuration's (``gpu_id``, ``use_gpu``; ``device: cpu`` forces the CPU), so on a
GPU machine the trials use the GPU. ``--resume`` runs the trials not yet in ``trials.csv``, so an interrupted
local search loses at most the trial it was running (which starts again from scratch). Outputs as for Ray,
with each trial's folder (RecBole's log, checkpoints, ``error.txt`` if it failed) in ``search/trial_NNNNN``.

``--workers=N`` runs the trials in N processes at once (``python -m recbole_sprint.tune --resume
--worker=i/N``, trials ``i, i+N, ...``; output in ``search/worker_<i>.log``), all on the config's device: a GPU
that one small model leaves mostly idle trains several at once; each worker's trials run with the machine's
cores shared out among the workers (``torch.set_num_threads``). Each worker adds its finished trial to
``trials.csv`` under a file lock; this process reports the trials as they finish and writes the best trial's
files at the end. Resume works as without workers, with any number of them.
"""

import gc
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback

import torch

from recbole_sprint.tune import common, trial
from recbole_sprint.tune.common import finished_trials, record_trial
from recbole_sprint.tune.common import trial_id as _trial_id


# --------------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------------
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


def worker_threads(n_workers, cpus=None):
    """CPU threads of each of ``n_workers`` worker processes: the machine's cores shared out, at least one.

    Left alone, torch gives every process a thread per core, so N workers on C cores run N x C threads: on the GPU
    machine (16 cores) eight workers' epochs took 2-3x as long as those of six one-thread benchmark runs of the same
    model and data (twenty-second session's logs; the oversubscription is the likely cause, not measured apart)."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, n_workers))


def local_device(fixed):
    gpu_id = local_gpu_id(fixed)
    if gpu_id is None:
        gpu_id = str(fixed.get("gpu_id", "0"))
    return f"cuda (gpu_id {gpu_id})" if gpu_id and torch.cuda.is_available() else "cpu"


def stopping_text(settings):
    """``"stopping_step=4"``: the trials' resolved value (the model's yaml, config files and overrides; saved in
    the settings), unless the search is searching it; a search saved before the value was recorded says the
    fixed value it was given, if any."""
    if "stopping_step" in settings.get("param_names", []):
        return "stopping_step searched"
    value = settings.get("stopping_step", settings["fixed"].get("stopping_step"))
    return f"stopping_step={value}" if value is not None else "the config's stopping_step"


def run_local_search(args, overrides):
    output_dir = os.path.abspath(args.output_dir)
    worker = parse_worker(args.worker) if args.worker else None
    if args.resume:
        settings = common.load_settings(output_dir, args)
    else:
        settings = common.new_search(args, overrides, output_dir)
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
          f"stopping ({stopping_text(settings)}), then tests its best checkpoint", flush=True)
    if n_workers > 1:
        return run_workers(output_dir, settings, todo, n_workers)
    return run_trials(output_dir, settings, todo, worker)


def run_trials(output_dir, settings, todo, worker):
    """Run the trials ``todo`` one after another in this process; record each as it finishes. Without
    ``worker``, finish the search (summary, best trial); a worker only says what it ran."""
    names, trials, fixed = settings["param_names"], settings["trials"], settings["fixed"]
    csv_path = os.path.join(output_dir, common.TRIALS_CSV)
    gpu_id = local_gpu_id(fixed)
    threads = worker_threads(worker[1]) if worker is not None else None  # one process alone: torch's own setting

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
                result = trial.run_trial(params, fixed, trial_dir, gpu_id=gpu_id, threads=threads)
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
    return common.finish_from_record(output_dir, settings, time.time() - started, not_finished)


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

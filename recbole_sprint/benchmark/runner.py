"""Run a benchmark grid: every cell through ``run_recbole_sprint`` (RecBole's normal trainer), one finished run
per line in the results store; cells whose run id is already stored are skipped, so an interrupted grid
resumes where it stopped.

Sequential by default (a tqdm bar over the grid). With ``parallel=True`` or an ``address``, cells run as Ray
tasks (one CPU each) and the driver stores each result as it arrives.

Everything a run writes goes under the output folder: the store, tables and plots, each run's checkpoint
(``saved/<run id>/``, deleted once the run is stored unless ``keep_checkpoints``) and RecBole's own log files
(``log/<model>/``, ``log_tensorboard/``: RecBole writes them into the working directory, so each run works in the
output folder); nothing goes into the directory the command was started from.
"""

import contextlib
import json
import os
import shutil
import time

from tqdm import tqdm

from recbole_sprint.benchmark.store import ResultStore

STORE_NAME = "runs.jsonl"
FINISHED_AT_FORMAT = "%Y-%m-%dT%H:%M:%S"  # a record's finished_at (local time)


def run_config(cell, output_dir):
    """The config dict of one run: the cell's config plus data_path and output locations."""
    config = dict(cell.config)
    if cell.data_path is not None:
        config["data_path"] = cell.data_path
    else:  # made absolute: the run works in the output folder (RecBole's default data_path is 'dataset/')
        config["data_path"] = os.path.abspath(config.get("data_path") or "dataset")
    config.setdefault("show_progress", False)
    config.setdefault("log_flops", False)
    config["checkpoint_dir"] = os.path.join(os.path.abspath(output_dir), "saved", cell.run_id)
    return config


def run_cell(cell, output_dir, keep_checkpoints=False):
    """Train and test one cell; returns the record to store. The run's checkpoint (needed to test the best
    epoch) is deleted afterwards unless ``keep_checkpoints``."""
    from recbole_sprint.quick_start import run_recbole_sprint

    start = time.time()
    config = run_config(cell, output_dir)
    with working_directory(output_dir):  # RecBole's log/ and log_tensorboard/ go there
        result = run_recbole_sprint(cell.model_name, cell.dataset, config_dict=config)
    if not keep_checkpoints:
        shutil.rmtree(config["checkpoint_dir"], ignore_errors=True)
    return {
        "run_id": cell.run_id,
        "model": cell.model,
        "model_class": cell.model_name,
        "dataset": cell.dataset,
        "seed": cell.seed,
        "variant": cell.variant,
        "variant_label": cell.variant_label,
        "config": cell.config,
        "test_result": {k: float(v) for k, v in result["test_result"].items()},
        # the same model ranked with the user's history left in (issue 24: beside the authors' unmasked numbers)
        "test_result_unmasked": ({k: float(v) for k, v in result["test_result_unmasked"].items()}
                                 if result.get("test_result_unmasked") else None),
        "best_valid_result": {k: float(v) for k, v in result["best_valid_result"].items()},
        "best_valid_score": float(result["best_valid_score"]),
        "n_params": int(result["n_params"]),
        "n_params_embedding": int(result["n_params_embedding"]),
        "n_params_non_embedding": int(result["n_params_non_embedding"]),
        "train_seconds": float(result["train_seconds"]),
        "eval_exclude_history": bool(result["eval_exclude_history"]),
        "wall_seconds": time.time() - start,
        "finished_at": time.strftime(FINISHED_AT_FORMAT),
    }


@contextlib.contextmanager
def working_directory(path):
    """Work in ``path`` (created if needed) for the ``with`` block, then return to the previous directory."""
    previous = os.getcwd()
    os.makedirs(path, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def check_shard(shard):
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``ValueError`` naming the option otherwise."""
    try:
        index, count = (int(part) for part in str(shard).split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise ValueError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {shard!r}")
    return index, count


def check_rerun_before(value):
    """``--rerun_before``: a time in :data:`FINISHED_AT_FORMAT`; ``ValueError`` naming the option otherwise."""
    try:
        time.strptime(str(value), FINISHED_AT_FORMAT)
    except ValueError:
        raise ValueError(f"--rerun_before must be a time YYYY-MM-DDTHH:MM:SS (e.g. 2026-11-23T20:00:00), got {value!r}")
    return str(value)


def training_identity(model_class, dataset, seed, config):
    """What decides a run's training, whatever spec holds it: the trained class, dataset, seed and the cell's config
    (a sweep's values included; labels and variants are presentation). Equal identities train the same run."""
    return json.dumps({"model_class": model_class, "dataset": dataset, "seed": seed, "config": config},
                      sort_keys=True, default=str)


def check_done_in(value):
    """``--done_in``: output folders (comma-separated, or a list), each holding a results store; the list of
    folders, or a ``ValueError`` naming the option and the missing store."""
    folders = [folder for folder in (value.split(",") if isinstance(value, str) else value) if folder]
    for folder in folders:
        if not os.path.isfile(os.path.join(folder, STORE_NAME)):
            raise ValueError(f"--done_in: no results store {os.path.join(folder, STORE_NAME)} (give the output "
                             f"folders of other specs, comma-separated)")
    return folders


def runs_stored_elsewhere(cells, done_in):
    """The run ids of ``cells`` whose identical run (:func:`training_identity`) is stored in one of the stores
    ``done_in`` (output folders of other specs, e.g. the main table's for a depth sweep's 2-layer cells)."""
    stored = set()
    for folder in check_done_in(done_in):
        stored |= {training_identity(r.get("model_class", r["model"]), r["dataset"], r["seed"], r.get("config"))
                   for r in ResultStore(os.path.join(folder, STORE_NAME)).load()}
    return {cell.run_id for cell in cells
            if training_identity(cell.model_name, cell.dataset, cell.seed, cell.config) in stored}


def run_grid(spec, output_dir, parallel=False, address=None, show_progress=True, keep_checkpoints=False, shard=None,
             models=None, datasets=None, rerun_before=None, done_in=()):
    """Run every unfinished cell of ``spec``; returns the store's records of this spec's grid.

    ``models`` / ``datasets`` (labels or model names / dataset names, see :func:`spec.select_cells`) run only
    the selected cells; their run ids are those of the whole grid. ``shard="i/n"`` then runs only the selected
    cells whose position among them is ``i`` modulo ``n``, so that ``n`` processes (e.g. sharing one GPU) split
    a grid; they share the store (appends are locked).

    ``rerun_before`` (``YYYY-MM-DDTHH:MM:SS``): selected cells whose stored run finished before that time run
    again (after a code change that alters results); the new record replaces the old one in the tables (the
    store's later record wins) and is itself finished after the cutoff, so an interrupted rerun resumes.

    ``done_in`` (output folders of other specs): selected cells whose identical run (same class, dataset, seed and
    config) is stored there are not trained again (nothing is copied: each spec's tables show its own store).

    Returns:
        ``(records, n_ran)``: the stored records of the grid's cells, and how many runs this call trained.
    """
    from recbole_sprint.benchmark.spec import select_cells

    store = ResultStore(os.path.join(output_dir, STORE_NAME))
    grid = spec.cells()
    cells = grid if models is None and datasets is None else select_cells(spec, models, datasets)
    if shard is not None:
        index, count = check_shard(shard)
        cells = cells[index::count]
    done = store.finished_ids(None if rerun_before is None else check_rerun_before(rerun_before))
    done |= runs_stored_elsewhere(cells, done_in) if done_in else set()
    todo = [cell for cell in cells if cell.run_id not in done]
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"benchmark {spec.name}", unit="run",
               disable=not show_progress)
    try:
        if parallel or address:
            _run_ray(todo, output_dir, store, bar, address, keep_checkpoints)
        else:
            for cell in todo:
                bar.set_postfix_str(f"{cell.dataset} {cell.model} {cell.variant_label} seed={cell.seed}")
                store.append(run_cell(cell, output_dir, keep_checkpoints))
                bar.update()
    finally:
        bar.close()
    ids = {cell.run_id for cell in grid}  # every finished run of the whole grid, selected by this call or not
    return [r for r in store.load() if r["run_id"] in ids], len(todo)


def _ray_task(cell, output_dir, keep_checkpoints):
    """Body of one Ray task: RecBole's Config reads ``sys.argv``, which a worker must not pass on."""
    import sys

    sys.argv = sys.argv[:1]
    import recbole_sprint  # noqa: F401  (shims and plugin metrics in the worker)

    os.makedirs(os.path.join(output_dir, "worker_logs"), exist_ok=True)
    os.chdir(os.path.join(output_dir, "worker_logs"))  # RecBole writes log/ into the cwd
    return run_cell(cell, output_dir, keep_checkpoints)


def _run_ray(todo, output_dir, store, bar, address, keep_checkpoints):
    import ray  # only here: Ray is optional (not installed on every machine)

    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": python_path}})
    task = ray.remote(num_cpus=1)(_ray_task)
    output_dir = os.path.abspath(output_dir)
    pending = [task.remote(cell, output_dir, keep_checkpoints) for cell in todo]
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            store.append(ray.get(finished[0]))
            bar.update()
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)

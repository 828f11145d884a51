"""benchmarks/paper_gpu.sh's pool: every process it starts trains exactly one cell of the shipped specs, and no
two processes the same one (two processes training one run at once cost a GPU session a run and left a duplicate
record in the store)."""

import os
import shlex
import subprocess

import pytest

from recbole_sprint.benchmark.spec import load_spec, select_cells

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pool_jobs(datasets=""):
    """The lines of the script's own pool_jobs function (LOG_NAME SPEC OUTPUT_DIR FILTERS...)."""
    script = ('eval "$(sed -n \'/^pool_jobs() {/,/^}/p\' benchmarks/paper_gpu.sh)"; '
              "SPECS=recbole_sprint/properties/benchmark RESULTS=/results pool_jobs")
    out = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "DATASETS": datasets}).stdout
    return [shlex.split(line) for line in out.splitlines()]


def test_each_pool_process_trains_one_cell_and_no_cell_twice(monkeypatch):
    monkeypatch.chdir(REPO)
    if not os.path.isdir(os.path.join(REPO, "..", "shared", "datasets", "ml-1m-3k")):
        pytest.skip("../shared/datasets is not next to this checkout")
    jobs = pool_jobs()
    specs = {path: load_spec(path) for path in {job[1] for job in jobs}}
    seen = {}
    for name, spec_path, _, *filters in jobs:
        options = dict(zip(filters[0::2], filters[1::2]))
        cells = select_cells(specs[spec_path], models=options["--models"], datasets=options["--datasets"])
        index, count = map(int, options["--shard"].split("/"))
        assert count == len(cells), f"{name}: --shard {options['--shard']} but the filters select {len(cells)} cells"
        (cell,) = cells[index::count]
        assert cell.run_id not in seen, f"{name} trains {cell.model} {cell.dataset} seed {cell.seed}, as {seen.get(cell.run_id)}"
        seen[cell.run_id] = name
    every_cell = {cell.run_id for spec in specs.values() for cell in spec.cells()}
    assert set(seen) == every_cell, f"{len(every_cell - set(seen))} cells of the specs are in no pool group"
    assert {job[0] for job in pool_jobs("ml-1m-3k")} == {name for name in seen.values() if "_ml-1m-3k_" in name}

"""benchmarks/paper_gpu.sh's pool: every process it starts trains exactly one cell of the shipped specs, and no
two processes the same one (two processes training one run at once cost a GPU session a run and left a duplicate
record in the store)."""

import os
import shlex
import subprocess

import pytest

from recbole_sprint.benchmark.spec import load_spec, select_cells

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pool_jobs(datasets="", *groups):
    """The lines of the script's own pool_jobs function (LOG_NAME SPEC OUTPUT_DIR FILTERS...)."""
    script = ('eval "$(sed -n \'/^pool_jobs() {/,/^}/p\' benchmarks/paper_gpu.sh)"; '
              "SPECS=recbole_sprint/properties/benchmark RESULTS=/results pool_jobs " + " ".join(groups))
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


def test_pool_jobs_come_in_the_order_the_groups_are_named():
    names = [job[0] for job in pool_jobs("ml-1m-3k", "hstu", "pop")]
    assert names == [f"pool_hstu_ml-1m-3k_{i}" for i in range(6)] + [f"pool_pop_ml-1m-3k_{i}" for i in range(3)]
    every = [job[0] for job in pool_jobs("ml-1m-3k")]  # no names: the table's order, pop first
    assert every[:3] == [f"pool_pop_ml-1m-3k_{i}" for i in range(3)] and len(every) > 9


def test_depth_runs_skip_the_cells_the_main_table_has_stored(tmp_path):
    """The depth sweep's pool processes pass the main table's store as --done_in (its 2-layer cells train exactly
    as the main table's: the eighteenth session trained four of them a second time), once that store exists; no
    other group does."""
    script = ('eval "$(sed -n \'/^pool_jobs() {/,/^}/p\' benchmarks/paper_gpu.sh)"; '
              f"SPECS=specs RESULTS={tmp_path} pool_jobs hstu_depth hstu")

    def lines():
        out = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return [shlex.split(line) for line in out.splitlines()]

    assert not any("--done_in" in job for job in lines())  # no main-table store yet: nothing to skip
    (tmp_path / "paper_main").mkdir()
    (tmp_path / "paper_main" / "runs.jsonl").write_text("")
    for name, _, out, *filters in lines():
        options = dict(zip(filters[0::2], filters[1::2]))
        if name.startswith("pool_hstu_depth_"):
            assert options["--done_in"] == f"{tmp_path}/paper_main" and out == f"{tmp_path}/paper_depth"
        else:
            assert "--done_in" not in options and out == f"{tmp_path}/paper_main"


FAKE_PYTHON = """#!/usr/bin/env bash
# a stand-in for `python -m recbole_sprint.benchmark ...`: records its arguments; the ml-1m-3k shard 0 dies out of
# GPU memory on its first try, the amazon-beauty shard 1 fails with another error every time
echo "$*" >> "$CALLS"
case "$*" in
  *"--datasets ml-1m-3k --shard 0/3"*)
    if [ ! -e "$CALLS.oom" ]; then touch "$CALLS.oom"; echo "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.29 GiB"; exit 1; fi ;;
  *"--datasets amazon-beauty --shard 1/3"*) echo "ValueError: something else"; exit 1 ;;
esac
echo trained
"""


def test_pool_tries_runs_that_died_out_of_gpu_memory_again_and_only_those(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    calls, results = tmp_path / "calls.txt", tmp_path / "results"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "RESULTS": str(results),
           "POOL": "4"}
    done = subprocess.run(["bash", "benchmarks/paper_gpu.sh", "pool", "pop"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    shards = [line.split("--datasets ")[1] for line in lines]
    assert sorted(shards) == sorted([f"{d} --shard {i}/3" for d in ("amazon-beauty", "ml-1m-3k") for i in range(3)]
                                    + ["ml-1m-3k --shard 0/3"])  # only the OOM run twice
    assert shards[-1] == "ml-1m-3k --shard 0/3"  # after the first pass
    assert "pass 1: 1 run(s) out of GPU memory; again, 2 at once" in done.stderr
    logs = results / "logs"
    assert "CUDA out of memory" in (logs / "pool_pop_ml-1m-3k_0.oom1.log").read_text()  # the failed try is kept
    assert (logs / "pool_pop_ml-1m-3k_0.log").read_text() == "trained\n"
    assert "ValueError" in (logs / "pool_pop_amazon-beauty_1.log").read_text()  # another error: not tried again


def _recording_python(tmp_path):
    """A bin folder whose ``python`` appends its arguments to $CALLS instead of running."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text('#!/usr/bin/env bash\necho "$*" >> "$CALLS"\n')
    (bin_dir / "python").chmod(0o755)
    return bin_dir


def _tune_bert4rec_ml1m3k(env):
    """``paper_gpu.sh tune BERT4RecSPRINT ml-1m-3k`` under ``env`` (its python: :func:`_recording_python`)."""
    subprocess.run(["bash", "benchmarks/paper_gpu.sh", "tune", "BERT4RecSPRINT", "ml-1m-3k"], cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("model, grid", [("SASRecSPRINT", "sprint_sasrec_grid"), ("BERT4RecSPRINT", "sprint_bidirectional_grid"),
                                         ("HSTUSPRINT", "sprint_hstu_grid"), ("SASRec++-SPRINT", "sprint_paper_grid")])
def test_tune_searches_each_row_over_its_grid(tmp_path, model, grid):
    bin_dir = _recording_python(tmp_path)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
           "RESULTS": str(tmp_path / "results")}
    subprocess.run(["bash", "benchmarks/paper_gpu.sh", "tune", model, "ml-1m-3k"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=60)
    (call,) = calls.read_text().splitlines()
    assert f"--model={model} " in call and "--dataset=ml-1m-3k " in call
    assert f"--params_file=properties/hyper/{grid}.hyper " in call and "--spec=recbole_sprint/properties/benchmark/paper_main.yaml" in call
    assert f"--output_dir={tmp_path / 'results' / 'tune' / (model + '_ml-1m-3k')} " in call


def test_tune_under_another_spec_has_its_own_folder(tmp_path):
    """TUNE_SPEC=paper_bert4rec: the fixed config is that spec's cell (the cloze protocol), the records and the log go
    to their own names, so a search of the same model and dataset under paper_main is neither resumed nor mixed in."""
    bin_dir = _recording_python(tmp_path)
    calls, results = tmp_path / "calls.txt", tmp_path / "results"
    (results / "tune" / "BERT4RecSPRINT_ml-1m-3k").mkdir(parents=True)  # a paper_main search, begun
    (results / "tune" / "BERT4RecSPRINT_ml-1m-3k" / "search_settings.json").write_text("{}")
    (results / "logs").mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "RESULTS": str(results),
           "TUNE_SPEC": "paper_bert4rec"}
    _tune_bert4rec_ml1m3k(env)
    (call,) = calls.read_text().splitlines()
    assert "--spec=recbole_sprint/properties/benchmark/paper_bert4rec.yaml " in call
    assert f"--output_dir={results / 'tune' / 'BERT4RecSPRINT_ml-1m-3k_paper_bert4rec'} " in call
    assert "--resume" not in call  # the paper_main search's settings are not this one's
    assert sorted(os.listdir(results / "logs")) == ["tune_BERT4RecSPRINT_ml-1m-3k_paper_bert4rec.log"]


def test_a_shorter_search_has_its_own_folder(tmp_path):
    """TUNE_EPOCHS=100: each trial at most 100 epochs (--max_epochs), in a folder of its own, so neither the 200-epoch
    search of the same spec is resumed with shorter trials nor the other way round."""
    bin_dir = _recording_python(tmp_path)
    calls, results = tmp_path / "calls.txt", tmp_path / "results"
    (results / "logs").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "RESULTS": str(results),
           "TUNE_SPEC": "paper_bert4rec", "TUNE_EPOCHS": "100"}
    _tune_bert4rec_ml1m3k(env)
    (call,) = calls.read_text().splitlines()
    assert f"--output_dir={results / 'tune' / 'BERT4RecSPRINT_ml-1m-3k_paper_bert4rec_e100'} " in call
    assert " --max_epochs=100" in call
    del env["TUNE_EPOCHS"]
    _tune_bert4rec_ml1m3k(env)
    assert "--max_epochs" not in calls.read_text().splitlines()[1]


def _fake_tools(tmp_path, nvidia_smi=None):
    """A bin folder with the stand-in python (FAKE_PYTHON) and, if given, an nvidia-smi script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    if nvidia_smi is not None:
        (bin_dir / "nvidia-smi").write_text(nvidia_smi)
        (bin_dir / "nvidia-smi").chmod(0o755)
    return bin_dir


def test_pool_jobs_filter_keeps_the_named_runs_only(tmp_path):
    bin_dir = _fake_tools(tmp_path)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
           "RESULTS": str(tmp_path / "results"), "JOBS": "_ml-1m-3k_(1|2)$"}
    done = subprocess.run(["bash", "benchmarks/paper_gpu.sh", "pool", "pop"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(line.split("--datasets ")[1] for line in calls.read_text().splitlines()) == [
        "ml-1m-3k --shard 1/3", "ml-1m-3k --shard 2/3"]
    env["JOBS"] = "_ml-20m_"
    done = subprocess.run(["bash", "benchmarks/paper_gpu.sh", "pool", "pop"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "JOBS='_ml-20m_' matches none of the runs of the groups pop" in done.stderr


def test_pool_first_starts_the_matching_runs_before_the_others_in_their_order(tmp_path):
    bin_dir = _fake_tools(tmp_path)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "POOL": "1",
           "RESULTS": str(tmp_path / "results"), "JOBS": "_amazon-beauty_", "FIRST": "_(2|0)$"}
    done = subprocess.run(["bash", "benchmarks/paper_gpu.sh", "pool", "pop"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split("--shard ")[1] for line in calls.read_text().splitlines()] == ["0/3", "2/3", "1/3"]


FAKE_NVIDIA_SMI = """#!/usr/bin/env bash
# free GPU memory in MiB: 8 GiB for the first 3 queries, then 40 GiB
n=$(($(cat "$SMI_COUNT" 2>/dev/null || echo 0) + 1)); echo $n > "$SMI_COUNT"
if ((n <= 3)); then echo 8192; else echo 40960; fi
"""

SLOW_PYTHON = """#!/usr/bin/env bash
echo "$(date +%s.%N) $*" >> "$CALLS"; sleep 2; echo trained
"""


def test_pool_starts_a_run_only_with_enough_free_gpu_memory(tmp_path):
    bin_dir = _fake_tools(tmp_path, FAKE_NVIDIA_SMI)
    (bin_dir / "python").write_text(SLOW_PYTHON)
    calls, count = tmp_path / "calls.txt", tmp_path / "smi_count"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "SMI_COUNT": str(count),
           "RESULTS": str(tmp_path / "results"), "POOL": "6", "MIN_FREE_GIB": "24", "MEMORY_POLL_S": "0.2"}
    done = subprocess.run(["bash", "benchmarks/paper_gpu.sh", "pool", "pop"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(calls.read_text().splitlines()) == 6  # every run started in the end
    # the first run starts at once (none of the pool's runs is running); the second waits while 8 GiB are free
    assert "waiting for 24 GiB of free GPU memory (8 GiB free)" in done.stderr
    assert int(count.read_text()) >= 4


def test_pool_starts_no_run_after_start_until_or_while_a_hold_file_exists(tmp_path):
    """START_UNTIL (epoch seconds) past, or a file RESULTS/pool.hold: the pool starts nothing and names each run it
    did not start; without either it starts them all."""
    import time

    bin_dir = _fake_tools(tmp_path)
    calls, results = tmp_path / "calls.txt", tmp_path / "results"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "RESULTS": str(results),
           "JOBS": "_ml-1m-3k_(1|2)$", "START_UNTIL": str(int(time.time()) - 1)}
    done = subprocess.run(["bash", "benchmarks/paper_gpu.sh", "pool", "pop"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not calls.exists()
    assert [line.split(": ")[1] for line in done.stderr.splitlines() if line.startswith("not started")] == [
        "pool_pop_ml-1m-3k_1", "pool_pop_ml-1m-3k_2"]
    env["START_UNTIL"] = str(int(time.time()) + 3600)
    (results / "pool.hold").touch()
    done = subprocess.run(["bash", "benchmarks/paper_gpu.sh", "pool", "pop"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and not calls.exists() and done.stderr.count("not started") == 2, done.stderr
    (results / "pool.hold").unlink()
    done = subprocess.run(["bash", "benchmarks/paper_gpu.sh", "pool", "pop"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and len(calls.read_text().splitlines()) == 2, done.stderr
    assert sorted(p.name for p in (results / "logs").glob("*.pid")) == [f"pool_pop_ml-1m-3k_{i}.pid" for i in (1, 2)]

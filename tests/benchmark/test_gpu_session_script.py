"""benchmarks/gpu_session.sh start, with stand-ins for the GPU machine's python3 and nvidia-smi: its `python` is a
wrapper script that replaces an old link without writing through it (a write through a link replaced the interpreter
in the eleventh session), and the call fails, with the runs' last log lines, when no run is training after the
pool starts (the same session's runs all died at import while the driver went on)."""

import os
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FAKE_PYTHON3 = """#!/usr/bin/env bash
# the GPU image's python3: pip and the import check succeed; a benchmark run fails at import or trains for a while
case "$*" in
  *"-m pip"*) exit 0 ;;
  *"-c "*) echo "torch x numpy y"; exit 0 ;;
  *speed.py*) echo "$*" >> "$OUT/speed_calls"; echo "| SASRecPPSPRINT w0 | full_sequence | 1.00 |" ;;
  *sprint_overhead.py*) echo "$*" >> "$OUT/overhead_calls"; echo "| dense tf32 on w0 | 1.00 |" ;;
  *recbole_sprint.tune*)  # a weight search: its record, a trial folder with a checkpoint, then its result
    for a in "$@"; do case $a in --output_dir=*) dir=${a#--output_dir=} ;; esac; done
    mkdir -p "$dir/search/trial_00000"; echo "trial_id,score" > "$dir/trials.csv"
    echo weights > "$dir/search/trial_00000/model.pth"; sleep "${TRAIN_S:-4}"; echo "trial_00000,0.1" >> "$dir/trials.csv" ;;
  *recbole_sprint.benchmark*)
    if [ "$RUN_MODE" = fail ]; then echo "ModuleNotFoundError: No module named 'numpy'"; exit 1; fi
    echo "epoch 0 training [time: 1s]"; echo "epoch 1 training [time: 1s]"; sleep "${TRAIN_S:-4}"
    echo "test result: done" ;;
esac
"""


def start(tmp_path, run_mode, **extra_env):
    tree = tmp_path / "tree"  # a small working tree: the scripts, wheels and datasets folders
    (tree / "benchmarks").mkdir(parents=True)
    for script in ("gpu_session.sh", "paper_gpu.sh"):
        shutil.copy(os.path.join(REPO, "benchmarks", script), tree / "benchmarks" / script)
    (tree / ".whl").mkdir()
    (tree / ".whl" / "x-1-py3-none-any.whl").write_text("")
    (tree / ".gpu" / "datasets" / "ml-1m-3k").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("python3", FAKE_PYTHON3), ("nvidia-smi", "#!/bin/sh\necho 100000\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    victim = tmp_path / "interpreter"  # what an old `python` link of an earlier call points to
    victim.write_text("the interpreter")
    os.symlink(victim, root / "bin" / "python")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GPU_SESSION_ROOT": str(root), "OUT": str(out),
           "RUN_MODE": run_mode, "START_CHECK_S": "2", "GROUPS_ORDER": "pop", "JOBS": "_ml-1m-3k_0$",
           "MIN_FREE_GIB": "0", **extra_env}
    done = subprocess.run(["bash", "benchmarks/gpu_session.sh", "start"], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120)
    return done, root, victim


def finish(tmp_path, root, **extra_env):
    """The last call of a session: `finish` from the copy of the tree that `start` made, as on the GPU machine."""
    (tmp_path / "out2").mkdir()
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "GPU_SESSION_ROOT": str(root),
           "OUT": str(tmp_path / "out2"), "COLLECT_POLL_S": "1", **extra_env}
    return subprocess.run(["bash", str(root / "repo" / "benchmarks" / "gpu_session.sh"), "finish"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_start_fails_with_the_logs_when_no_run_is_training(tmp_path):
    done, root, victim = start(tmp_path, "fail")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0 process(es) training" in done.stdout
    assert "pool_pop_ml-1m-3k_0.log" in done.stdout and "No module named 'numpy'" in done.stdout
    python = root / "bin" / "python"
    assert not python.is_symlink() and "exec python3" in python.read_text()
    assert victim.read_text() == "the interpreter"  # the old link was removed, not written through


def test_start_succeeds_when_a_run_is_training(tmp_path):
    done, root, _ = start(tmp_path, "train")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 process(es) training" in done.stdout
    assert not (tmp_path / "out" / "speed_calls").exists()  # no epoch timing unless EPOCH_TIMING_S > 0
    assert (root / "repo" / "benchmarks" / "gpu_session.sh").exists() and (root / "shared" / "datasets").is_dir()


def test_epoch_timing_runs_the_like_for_like_rows_before_the_pool(tmp_path):
    """EPOCH_TIMING_S > 0: speed.py on Beauty (2 and 6 layers) with train_pin_memory, with train_loss_sync epoch too,
    and with SPRINT's CUDA graphs too; its table lines are shown and its log comes back."""
    done, root, _ = start(tmp_path, "train", EPOCH_TIMING_S="60")
    assert done.returncode == 0, done.stdout + done.stderr
    calls = (tmp_path / "out" / "speed_calls").read_text().splitlines()
    assert len(calls) == 6 and all("--dataset amazon-beauty" in c and "--set num_negatives=16 --set tf32=true" in c
                                   and "--full_batch_size 512" in c for c in calls)
    assert [c.split("--n_layers ")[1].split()[0] for c in calls] == ["2", "2", "2", "6", "6", "6"]
    levers = ("train_pin_memory=true", "train_loss_sync=epoch", "sprint_compile=cuda_graph")
    assert [[lever in c for lever in levers] for c in calls] == [[True, False, False], [True, True, False],
                                                                  [True, True, True]] * 2
    assert "| SASRecPPSPRINT w0 | full_sequence | 1.00 |" in done.stdout
    assert (tmp_path / "out" / "epoch_times.log").exists()


def test_big_timing_runs_the_0_34b_configuration_with_and_without_sprint_before_the_pool(tmp_path):
    """BIG_TIMING_S > 0: speed.py --big_only --big_w0 for BIG_MODELS (default: RecBole's SASRec backbone and SASRec++
    with both attentions); its table lines are shown and its log comes back."""
    done, root, _ = start(tmp_path, "train", BIG_TIMING_S="60", BIG_SET="--set sprint_every=4")
    assert done.returncode == 0, done.stdout + done.stderr
    (call,) = (tmp_path / "out" / "speed_calls").read_text().splitlines()
    assert "--big_only --big_w0 --big_models SASRecSPRINT,SASRecPPSPRINT:dense,SASRecPPSPRINT:fused" in call
    assert call.endswith("--set sprint_every=4")  # BIG_SET: config keys for every row
    assert "| SASRecPPSPRINT w0 | full_sequence | 1.00 |" in done.stdout
    assert (tmp_path / "out" / "speed_big.log").exists() and "1 process(es) training" in done.stdout


def test_finish_waits_for_the_runs_then_times_on_the_idle_gpu(tmp_path):
    """The pool's runs first: `finish` collects until no run is training, then runs start's timings (here the
    SPRINT-overhead part, dense attention only), and the timing log comes back with the stores' snapshot."""
    done, root, _ = start(tmp_path, "train", TRAIN_S="6")
    assert done.returncode == 0, done.stdout + done.stderr
    ended = finish(tmp_path, root, SECONDS_LEFT="60", TIMING_S="20", IMPLS="dense", PROFILE_STEPS="0",
                   TIMING_SET="--set train_loss_sync=epoch")
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert "training now: 0" in ended.stdout and "timings skipped" not in ended.stdout
    calls = (tmp_path / "out2" / "overhead_calls").read_text().splitlines()
    assert len(calls) == 1 and "--attention_impl dense --profile 0" in calls[0]
    assert "--set train_loss_sync=epoch" in calls[0]  # TIMING_SET: config keys for every timed variant
    assert (tmp_path / "out2" / "logs.tgz").exists() and (tmp_path / "out2" / "sprint_overhead_graphs.log").exists()


def test_finish_leaves_training_runs_alone_and_skips_the_timings(tmp_path):
    """Runs still training when only the timings' share of the call is left: no timing (it would share the GPU with
    them), the runs go on, and the call says where each unfinished run is."""
    done, root, _ = start(tmp_path, "train", TRAIN_S="30")
    assert done.returncode == 0, done.stdout + done.stderr
    ended = finish(tmp_path, root, SECONDS_LEFT="13", TIMING_S="10")
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert "timings skipped: runs are still training" in ended.stdout
    assert "pool_pop_ml-1m-3k_0: epoch 1 training" in ended.stdout
    assert not (tmp_path / "out2" / "overhead_calls").exists()


def test_tune_runs_a_weight_search_beside_the_pool_and_its_records_come_back(tmp_path):
    """TUNE="MODEL DATASET": paper_gpu.sh tune beside the pool, counted among what trains (finish waits for it), and
    the search's records come back in tune.tgz without its checkpoints."""
    import tarfile

    done, root, _ = start(tmp_path, "train", TRAIN_S="6", TUNE="SASRecSPRINT amazon-beauty")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 process(es) training" in done.stdout and "tune SASRecSPRINT amazon-beauty" in done.stdout
    ended = finish(tmp_path, root, SECONDS_LEFT="60")
    assert ended.returncode == 0 and "training now: 0" in ended.stdout, ended.stdout + ended.stderr
    with tarfile.open(tmp_path / "out2" / "tune.tgz") as archive:
        names = archive.getnames()
        record = archive.extractfile("tune/SASRecSPRINT_amazon-beauty/trials.csv").read().decode()
    assert record == "trial_id,score\ntrial_00000,0.1\n"  # the search had ended when the last snapshot was taken
    assert not any(name.endswith(".pth") for name in names)


def test_hold_stops_the_named_runs_and_the_pool_starts_no_more(tmp_path):
    """`hold` (a call between start and finish): the runs whose log names match STOP are stopped, the pool starts
    none of the runs still waiting (it names them in the driver log), and the call collects as `collect` does."""
    import time

    done, root, _ = start(tmp_path, "train", TRAIN_S="60", POOL="1", JOBS="_ml-1m-3k_")
    assert done.returncode == 0 and "1 process(es) training" in done.stdout, done.stdout + done.stderr
    (tmp_path / "out2").mkdir()
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "GPU_SESSION_ROOT": str(root),
           "OUT": str(tmp_path / "out2"), "COLLECT_POLL_S": "1", "SECONDS_LEFT": "4", "STOP": "_ml-1m-3k_0$"}
    held = subprocess.run(["bash", str(root / "repo" / "benchmarks" / "gpu_session.sh"), "hold"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert held.returncode == 0, held.stdout + held.stderr
    assert "hold: stopped pool_pop_ml-1m-3k_0" in held.stdout
    assert "training now: 0" in held.stdout and (tmp_path / "out2" / "logs.tgz").exists()
    driver = (root / "results" / "driver.log").read_text()
    for _ in range(50):  # the pool names the waiting runs once the stopped one has freed its slot
        if "not started" in driver and "pool_pop_ml-1m-3k_2" in driver:
            break
        time.sleep(0.1)
        driver = (root / "results" / "driver.log").read_text()
    assert "not started" in driver and "pool_pop_ml-1m-3k_1" in driver and "pool_pop_ml-1m-3k_2" in driver, driver
    assert not (root / "results" / "logs" / "pool_pop_ml-1m-3k_1.log").exists()


def test_collect_returns_once_nothing_trains_and_the_pool_has_ended(tmp_path):
    """`collect` (and `hold`) stop waiting when the pool has ended and no run trains: device time is not spent on an
    idle machine (the eighteenth session's hold call idled 6 min so). While the pool still has a run training, the
    call waits."""
    import time

    done, root, _ = start(tmp_path, "train", TRAIN_S="4")
    assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "out2").mkdir()
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "GPU_SESSION_ROOT": str(root),
           "OUT": str(tmp_path / "out2"), "COLLECT_POLL_S": "1", "SECONDS_LEFT": "100"}
    began = time.monotonic()
    collected = subprocess.run(["bash", str(root / "repo" / "benchmarks" / "gpu_session.sh"), "collect"], env=env,
                               capture_output=True, text=True, timeout=120)
    took = time.monotonic() - began
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert "nothing training, the pool has ended" in collected.stdout and "training now: 0" in collected.stdout
    assert took < 30, took  # not SECONDS_LEFT
    assert (tmp_path / "out2" / "logs.tgz").exists()

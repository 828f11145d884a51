"""End-to-end Ray Tune searches on a tiny dataset (CPU): results, best trial, resume, early errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

ray = pytest.importorskip("ray", minversion="2.45")  # pyproject.toml's lower bound (the Tuner API used)

from recbole_sprint.tune import search  # noqa: E402

from .search_files import read_csv, tiny_search_files  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_trial_search_writes_csv_and_best_yaml(tiny, tmp_path, capsys):
    """Two trials, one after the other (grid order): lr=0.01 first, then lr=1e-4, whose epoch-1 validation
    score is far below lr=0.01's, so ASHA (grace period 1) stops it at epoch 1, before its test."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.01,0.0001]\n")
    out = tmp_path / "out"
    argv = ["--model=SASRecSPRINT", "--dataset=ml-tiny", f"--params_file={hyper}", "--num_samples=1",
            f"--config_files={config_file}", f"--output_dir={out}", "--num_cpus=2", "--verbose=0",
            "--sprint_temperature=2.0", "--max_epochs=2", "--max_concurrent_trials=1"]
    assert search.main(argv) == 0
    printed = capsys.readouterr().out

    rows = {float(r["learning_rate"]): r for r in read_csv(out / "trials.csv")}
    assert sorted(rows) == [0.0001, 0.01]
    assert [rows[0.01]["trial_id"], rows[0.0001]["trial_id"]] == ["trial_00000", "trial_00001"]  # grid order
    good, weak = rows[0.01], rows[0.0001]
    assert (good["status"], good["epochs"]) == ("completed", "2")
    assert (weak["status"], weak["epochs"], weak["test_ndcg@10"]) == ("early_stopped", "1", "")  # ASHA stopped it
    # the selection score is the validation NDCG@10 of the best epoch; the test metrics of that checkpoint
    assert float(good["best_valid_score"]) == float(good["valid_ndcg@10"])
    assert 0 <= float(good["test_ndcg@10"]) <= 1 and 0 <= float(good["test_recall@10"]) <= 1
    reports = [json.loads(line) for line in open(os.path.join(good["trial_dir"], "result.json"))]
    assert [(r["epoch"], r.get("completed", 0)) for r in reports] == [(1, 0), (2, 1)]  # epoch 1, then final
    assert "test_ndcg@10" not in reports[0] and reports[0]["valid_score"] <= reports[1]["valid_score"]
    best = max(rows.values(), key=lambda r: float(r["best_valid_score"]))  # best validation score in the CSV
    assert best is good

    best_trial = json.loads((out / "best_trial.json").read_text())
    assert best_trial["trial_id"] == best["trial_id"]
    best_yaml = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best_yaml["learning_rate"] == 0.01
    assert (best_yaml["model"], best_yaml["dataset"]) == ("SASRecSPRINT", "ml-tiny")
    assert best_yaml["sprint_temperature"] == 2.0  # a --key=value override of the fixed config
    assert (best_yaml["epochs"], best_yaml["data_path"]) == (2, str(tmp_path / "data"))  # absolute path

    from recbole_sprint.config import Config

    reloaded = Config(config_file_list=[str(out / "best_config.yaml")])
    assert reloaded["model"] == "SASRecSPRINT" and reloaded["learning_rate"] == 0.01
    assert f"best trial {best['trial_id']}" in printed and "test ndcg@10=" in printed


def test_best_trial_is_chosen_on_validation_never_on_test():
    rows = [
        {"trial_id": "a", "status": "completed", "best_valid_score": 0.30, "test_ndcg@10": 0.10},
        {"trial_id": "b", "status": "completed", "best_valid_score": 0.20, "test_ndcg@10": 0.50},  # best on test
        {"trial_id": "c", "status": "early_stopped", "best_valid_score": 0.40},  # no test: never "best"
    ]
    assert search.best_row(rows, "max")["trial_id"] == "a"
    assert search.best_row(rows, "min")["trial_id"] == "b"  # e.g. a loss as valid_metric
    assert search.best_row(rows[2:], "max") is None


def _wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _saved_with_checkpoint(search_dir, index):
    """Whether Ray's saved experiment state has trial ``index`` running with a checkpoint (what a resume sees)."""
    for name in os.listdir(search_dir) if os.path.isdir(search_dir) else []:
        if not (name.startswith("experiment_state") and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(search_dir, name)) as handle:
                state = json.load(handle)
        except (OSError, ValueError):  # being written
            continue
        for trial_json, runtime_json in state["trial_data"]:
            trial, runtime = json.loads(trial_json), json.loads(runtime_json)
            if trial["config"].get("trial_index") == index and trial["status"] == "RUNNING":
                if runtime["last_result"].get("checkpoint_dir_name"):
                    return True
    return False


def test_killed_search_resumes_every_trial_once(tiny, tmp_path, capsys):
    """A 2-trial ASHA search in its own process, killed (SIGKILL, Ray included) while the second trial trains,
    after its first checkpoint; --resume (Tuner.restore) continues that trial from its checkpoint, does not run
    the first again, and ends with each trial once in trials.csv."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.0001,0.01]\n")
    out = tmp_path / "out"
    argv = ["--model=SASRec", "--dataset=ml-tiny", f"--params_file={hyper}", "--num_samples=1", "--max_epochs=6",
            f"--config_files={config_file}", f"--output_dir={out}", "--num_cpus=2", "--max_concurrent_trials=1",
            "--verbose=0"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    log = open(tmp_path / "first_run.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "recbole_sprint.tune", *argv], cwd=tmp_path, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Ray saves its experiment state after every trial checkpoint (search.py: num_to_keep=1)
        _wait_for(lambda: _saved_with_checkpoint(out / "search", 1) or driver.poll() is not None, 500,
                  "the second trial's first checkpoint in Ray's saved state")
        assert driver.poll() is None, (tmp_path / "first_run.log").read_text()[-3000:]
        os.killpg(driver.pid, signal.SIGKILL)  # the driver, Ray's own processes and the trial's worker
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        log.close()
    done = read_csv(out / "trials.csv")
    assert [(r["trial_id"], r["status"], r["epochs"]) for r in done] == [("trial_00000", "completed", "6")]
    first_results = (out / "search" / "trial_00000" / "result.json").read_text()

    assert search.main([f"--output_dir={out}", "--resume", "--num_cpus=2", "--verbose=0"]) == 0
    printed = capsys.readouterr().out
    rows = read_csv(out / "trials.csv")
    assert [r["trial_id"] for r in rows] == ["trial_00000", "trial_00001"]  # every trial, once
    assert rows[0] == done[0] and (out / "search" / "trial_00000" / "result.json").read_text() == first_results
    assert (rows[1]["status"], rows[1]["epochs"], float(rows[1]["learning_rate"])) == ("completed", "6", 0.01)
    logs = {}
    for trial in ("trial_00000", "trial_00001"):
        folder = out / "search" / trial / "log"
        logs[trial] = [f for _, _, files in os.walk(folder) for f in files]
    assert len(logs["trial_00000"]) == 1  # trained once, in the first run
    assert len(logs["trial_00001"]) == 2  # started in the first run, continued in the second
    reports = [json.loads(line) for line in open(out / "search" / "trial_00001" / "result.json")]
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4, 5, 6]  # continued from its checkpoint: no epoch twice
    assert len({r["pid"] for r in reports}) == 2 and reports[-1]["completed"] == 1  # one process per run
    assert "2 of 2 trial(s) finished" in printed and "best trial trial_00001" in printed


@pytest.mark.parametrize(
    "hyper_text, message",
    [
        ("learning_rate uniform 0.01\n", "space.hyper:1: expected 2 numbers, got 1"),
        ("learning_rate choice [0.1]\nhiden_size choice [16,32]\n",
         "space.hyper:2: unknown parameter [hiden_size]: not a configuration key of SASRecSPRINT on ml-tiny"),
    ],
)
def test_bad_hyper_file_fails_before_ray_starts(tiny, tmp_path, monkeypatch, capsys, hyper_text, message):
    config_file, hyper = tiny_search_files(tmp_path, tiny, hyper_text, n_users=5)

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start for a bad search space")

    monkeypatch.setattr(search.ray, "init", no_ray)
    argv = ["--model=SASRecSPRINT", "--dataset=ml-tiny", f"--params_file={hyper}", f"--config_files={config_file}",
            f"--output_dir={tmp_path / 'out'}"]
    assert search.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gpus_per_trial_without_gpu_fails_fast(tiny, tmp_path, monkeypatch, capsys):
    """No hanging trials: a GPU request that no GPU can meet is an error, before Ray starts (no CUDA here) and,
    for a cluster that lacks GPUs, right after ray.init (Ray's resources), before any trial is queued."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate choice [0.01]\n", n_users=5)
    argv = ["--model=SASRec", "--dataset=ml-tiny", f"--params_file={hyper}", f"--config_files={config_file}",
            f"--output_dir={tmp_path / 'out'}", "--gpus_per_trial=0.5", "--num_cpus=1"]
    assert not search.torch.cuda.is_available()  # this test describes a CPU-only machine
    assert search.main(argv) == 2
    assert "--gpus_per_trial=0.5 but torch sees no CUDA GPU on this machine" in capsys.readouterr().err
    assert not ray.is_initialized() and not (tmp_path / "out").exists()

    monkeypatch.setattr(search.torch.cuda, "is_available", lambda: True)  # torch fooled: Ray still finds 0 GPUs
    assert search.main(argv) == 2
    assert "--gpus_per_trial=0.5 but the Ray cluster has 0 GPU(s)" in capsys.readouterr().err
    assert not ray.is_initialized()
    assert not (tmp_path / "out").exists()  # nothing was started or written

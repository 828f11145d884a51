"""End-to-end Ray Tune searches on a tiny dataset (CPU): results, best trial, resume, early errors."""

import json
import os
import signal
import threading
import time

import pytest
import yaml

ray = pytest.importorskip("ray")

from recbole_sprint.tune import search  # noqa: E402

from .search_files import read_csv, tiny_search_files  # noqa: E402


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


def interrupt_when_exists(path, timeout=240):
    """Ctrl+C for this process (the search's driver) as soon as ``path`` exists."""

    def watch():
        deadline = time.time() + timeout
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.1)
        if os.path.exists(path):
            os.kill(os.getpid(), signal.SIGINT)  # handled by Ray's handler inside tune.run: save state, stop

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_interrupted_search_resumes_without_rerunning_finished_trials(tiny, tmp_path, capsys):
    """Trials run one at a time; Ctrl+C as soon as the first one is recorded in trials.csv (the second one is
    then running); --resume must finish the second without running the first again."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.01,0.001]\n")
    out = tmp_path / "out"
    argv = ["--model=SASRec", "--dataset=ml-tiny", f"--params_file={hyper}", "--num_samples=1",
            f"--config_files={config_file}", f"--output_dir={out}", "--num_cpus=2", "--max_concurrent_trials=1",
            "--verbose=0"]
    watcher = interrupt_when_exists(out / "trials.csv")
    assert search.main(argv) == 1  # interrupted: a trial left
    watcher.join()
    assert "1 trial(s) left; continue with: python -m recbole_sprint.tune" in capsys.readouterr().out
    done = read_csv(out / "trials.csv")
    assert len(done) == 1 and done[0]["status"] == "completed" and float(done[0]["learning_rate"]) == 0.01
    finished_dir = done[0]["trial_dir"]
    result_before = open(os.path.join(finished_dir, "result.json")).read()

    assert search.main([f"--output_dir={out}", "--resume", "--num_cpus=2", "--verbose=0"]) == 0
    rows = read_csv(out / "trials.csv")
    assert sorted(float(r["learning_rate"]) for r in rows) == [0.001, 0.01]
    again = [r for r in rows if r["trial_id"] == done[0]["trial_id"]]
    assert again == done  # same row: same metrics, same folder
    # not re-run: its results file did not grow, and RecBole logged one run in its folder
    assert open(os.path.join(finished_dir, "result.json")).read() == result_before
    logs = [f for _, _, files in os.walk(os.path.join(finished_dir, "log")) for f in files if f.endswith(".log")]
    assert len(logs) == 1


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

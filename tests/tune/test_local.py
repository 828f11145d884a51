"""The local backend (--backend=local): Ray's search-space semantics without Ray, results, resume, flags."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from recbole_sprint.tune import common, local, trial
from recbole_sprint.tune.hyper import parse_hyper_line

from .search_files import read_csv, tiny_search_files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIXED_SPACE = [
    "lr loguniform -9.210340372,-4.605170186",
    "p uniform 0.1,0.5",
    "w quniform 2.5,10,2.5",
    "zg grid [1,2,3]",
    "n randint 1,30",
    "h choice [16,32,[1,2]]",
    "ag grid ['a','b']",
]


def local_argv(hyper, config_file, out, *extra):
    return ["--backend=local", "--model=SASRecSPRINT", "--dataset=ml-tiny", f"--params_file={hyper}",
            "--num_samples=1", f"--config_files={config_file}", f"--output_dir={out}", *extra]


class TrialRecorder:
    """Stands in for ``trial.run_trial``: records each call's parameters and how many rows trials.csv had at
    that moment, then trains for real (or raises ``interrupt_at`` the call with that number, from 1)."""

    def __init__(self, monkeypatch, csv_path, interrupt_at=None):
        self.calls, self.csv_rows, self.csv_path, self.interrupt_at = [], [], csv_path, interrupt_at
        self.real = trial.run_trial
        monkeypatch.setattr(trial, "run_trial", self)

    def __call__(self, params, fixed, trial_dir, **kwargs):
        self.calls.append(dict(params))
        self.csv_rows.append(len(read_csv(self.csv_path)) if os.path.exists(self.csv_path) else 0)
        if len(self.calls) == self.interrupt_at:  # Ctrl+C in the middle of this trial
            os.makedirs(trial_dir, exist_ok=True)
            open(os.path.join(trial_dir, "partial.txt"), "w").close()
            raise KeyboardInterrupt
        return self.real(params, fixed, trial_dir, **kwargs)


def test_trials_follow_the_hyper_semantics():
    """num_samples x grid combinations; grids exhaustive in every sample; draws in range; seeded (both backends
    run these trials)."""
    params = [parse_hyper_line(line) for line in MIXED_SPACE]
    trials = common.draw_trials(params, 40, seed=1)
    assert len(trials) == 40 * 3 * 2
    assert [(t["ag"], t["zg"]) for t in trials[:6]] == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    assert all(list(t) == [p.name for p in params] for t in trials)  # .hyper order
    lr = [t["lr"] for t in trials]
    assert 1e-4 - 1e-12 <= min(lr) and max(lr) <= 1e-2 + 1e-12  # natural-log bounds
    assert 0.3 < sum(x < 1e-3 for x in lr) / len(lr) < 0.7  # log-uniform: about half below 1e-3
    assert all(0.1 <= t["p"] <= 0.5 for t in trials)
    assert {t["w"] for t in trials} <= {2.5, 5.0, 7.5, 10.0} and len({t["w"] for t in trials}) > 2
    assert {t["n"] for t in trials} <= set(range(1, 30)) and all(type(t["n"]) is int for t in trials)
    assert {json.dumps(t["h"]) for t in trials} == {"16", "32", "[1, 2]"}
    assert common.draw_trials(params, 40, seed=1) == trials
    assert common.draw_trials(params, 40, seed=2) != trials


def test_local_two_trial_search_writes_csv_and_best_yaml(tiny, tmp_path, monkeypatch, capsys):
    """Grid over two learning rates: both trials train (no ASHA), one after another; trials.csv is rewritten
    after each; the best is lr=0.01 on validation NDCG@10 (lr=1e-4 barely learns in 2 epochs)."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.01,0.0001]\n")
    out = tmp_path / "out"
    recorder = TrialRecorder(monkeypatch, str(out / "trials.csv"))
    assert common.main(local_argv(hyper, config_file, out, "--max_epochs=2", "--sprint_temperature=2.0")) == 0
    printed = capsys.readouterr().out

    assert recorder.calls == [{"learning_rate": 0.01}, {"learning_rate": 0.0001}]
    assert recorder.csv_rows == [0, 1]  # the first trial's row was written before the second trial started
    rows = read_csv(out / "trials.csv")
    assert [(r["trial_id"], float(r["learning_rate"]), r["status"], r["epochs"]) for r in rows] == [
        ("trial_00000", 0.01, "completed", "2"), ("trial_00001", 0.0001, "completed", "2")]
    for row in rows:
        assert float(row["best_valid_score"]) == float(row["valid_ndcg@10"])
        assert 0 <= float(row["test_ndcg@10"]) <= 1 and 0 <= float(row["test_recall@10"]) <= 1
        logs = [f for _, _, files in os.walk(os.path.join(row["trial_dir"], "log")) for f in files]
        assert len(logs) == 1  # each trial logs into its own folder, even in one process
        assert os.listdir(os.path.join(row["trial_dir"], "checkpoints"))
    good, weak = rows
    assert float(good["best_valid_score"]) > float(weak["best_valid_score"])

    best_yaml = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best_yaml["learning_rate"] == 0.01
    assert (best_yaml["model"], best_yaml["dataset"]) == ("SASRecSPRINT", "ml-tiny")
    assert best_yaml["sprint_temperature"] == 2.0  # a --key=value override of the fixed config
    assert (best_yaml["epochs"], best_yaml["data_path"]) == (2, str(tmp_path / "data"))
    best_trial = json.loads((out / "best_trial.json").read_text())
    assert (best_trial["trial_id"], best_trial["learning_rate"]) == ("trial_00000", 0.01)
    assert best_trial["test_ndcg@10"] == pytest.approx(float(good["test_ndcg@10"]))
    settings = json.loads((out / "search_settings.json").read_text())
    assert settings["backend"] == "local" and settings["n_trials"] == 2 and isinstance(settings["seed"], int)
    assert settings["trials"] == recorder.calls
    device = "cuda (gpu_id 0)" if torch.cuda.is_available() else "cpu"  # the config's gpu_id: RecBole's default
    assert f"local search: 2 of 2 trial(s) to run, one after another on {device}; no ASHA" in printed
    assert "best trial trial_00000 (chosen on validation NDCG@10=0.0" in printed and "test ndcg@10=" in printed


def test_local_resume_skips_the_finished_trials(tiny, tmp_path, monkeypatch, capsys):
    """Ctrl+C during the second trial; --resume runs only that one (from scratch); a third run, nothing."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.01,0.001]\n")
    out = tmp_path / "out"
    csv_path = str(out / "trials.csv")
    interrupted = TrialRecorder(monkeypatch, csv_path, interrupt_at=2)
    assert common.main(local_argv(hyper, config_file, out)) == 1
    assert interrupted.calls == [{"learning_rate": 0.01}, {"learning_rate": 0.001}]
    printed = capsys.readouterr().out
    assert "not finished: trial_00001 (interrupted)" in printed
    assert f"1 trial(s) left; continue with: python -m recbole_sprint.tune --output_dir={out} --resume" in printed
    done = read_csv(csv_path)
    assert [(r["trial_id"], float(r["learning_rate"])) for r in done] == [("trial_00000", 0.01)]
    assert os.path.exists(out / "best_config.yaml")  # the best so far

    # a rerun without --resume does not touch the search
    assert common.main(local_argv(hyper, config_file, out)) == 2
    assert "already holds a search: pass --resume" in capsys.readouterr().err

    monkeypatch.setattr(trial, "run_trial", interrupted.real)
    resumed = TrialRecorder(monkeypatch, csv_path)
    assert common.main([f"--output_dir={out}", "--resume"]) == 0  # the saved backend: local
    assert resumed.calls == [{"learning_rate": 0.001}]
    rows = read_csv(csv_path)
    assert rows[0] == done[0]  # the finished trial's row, as it was
    assert [(r["trial_id"], float(r["learning_rate"]), r["status"]) for r in rows] == [
        ("trial_00000", 0.01, "completed"), ("trial_00001", 0.001, "completed")]
    assert not os.path.exists(out / "search" / "trial_00001" / "partial.txt")  # restarted in a fresh folder
    assert "local search: 1 of 2 trial(s) to run" in capsys.readouterr().out
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    best_row = max(rows, key=lambda r: float(r["best_valid_score"]))
    assert best["learning_rate"] == float(best_row["learning_rate"])

    again = TrialRecorder(monkeypatch, csv_path)
    assert common.main([f"--output_dir={out}", "--resume"]) == 0
    assert again.calls == [] and read_csv(csv_path) == rows
    assert "2 of 2 trial(s) finished" in capsys.readouterr().out
    assert common.main([f"--output_dir={out}", "--resume", "--backend=ray"]) == 2
    assert f"the search in {out} runs with --backend=local, not ray" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--gpus_per_trial=1"], "--gpus_per_trial"),
        (["--scheduler=asha", "--address=auto"], "--scheduler, --address"),
        (["--num_cpus=2", "--max_concurrent_trials=1"], "--max_concurrent_trials, --num_cpus"),
    ],
)
def test_local_backend_refuses_ray_only_options(tiny, tmp_path, monkeypatch, capsys, extra, named):
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.01]\n", n_users=5)
    out = tmp_path / "out"
    recorder = TrialRecorder(monkeypatch, str(out / "trials.csv"))
    assert common.main(local_argv(hyper, config_file, out, *extra)) == 2
    assert f"error: --backend=local does not take {named} (Ray-only" in capsys.readouterr().err
    assert recorder.calls == [] and not out.exists()


def test_local_search_runs_where_ray_cannot_be_imported(tiny, tmp_path):
    """`import ray` fails (as on the offline GPU machine, which has no Ray): the default backend says so and
    names --backend=local; `python -m recbole_sprint.tune --backend=local` runs the search without Ray."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.01]\n", n_users=60)
    out = tmp_path / "out"
    code = (
        "import json, runpy, sys\n"
        "sys.modules['ray'] = None  # any `import ray...` raises ImportError\n"
        "codes = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    sys.argv = ['python -m recbole_sprint.tune'] + argv\n"
        "    try:\n"
        "        runpy.run_module('recbole_sprint.tune', run_name='__main__', alter_sys=True)\n"
        "    except SystemExit as done:\n"
        "        codes.append(done.code)\n"
        "print(json.dumps({'codes': codes, 'ray': sorted(m for m in sys.modules if m.startswith('ray.')),\n"
        "                  'ray_is_blocked': sys.modules.get('ray', 0) is None}))\n"
    )
    argv = local_argv(hyper, config_file, out)
    runs = [argv[1:], argv]  # without --backend (Ray), then --backend=local
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code, json.dumps(runs)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"codes": [2, 0], "ray": [], "ray_is_blocked": True}
    assert "error: --backend=ray needs Ray Tune" in done.stderr and "use --backend=local" in done.stderr
    rows = read_csv(out / "trials.csv")
    assert [(r["status"], float(r["learning_rate"])) for r in rows] == [("completed", 0.01)]
    assert yaml.safe_load((out / "best_config.yaml").read_text())["learning_rate"] == 0.01


@pytest.mark.parametrize(
    "fixed, gpu_id",
    [({}, None), ({"gpu_id": "1"}, None), ({"use_gpu": False}, ""), ({"device": "cpu"}, ""), ({"use_gpu": True}, None)],
)
def test_local_trials_run_on_the_config_device(fixed, gpu_id):
    """None: RecBole's own choice from the config's gpu_id (CUDA when available); "": the CPU."""
    assert local.local_gpu_id(fixed) == gpu_id


def test_local_workers_run_each_trial_once_and_resume(tiny, tmp_path, capsys):
    """--workers=2: trials 0 and 2 in worker 0, trial 1 in worker 1, each in its own process; trials.csv ends
    in trial order with all three; a resume with workers finds nothing left to run."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.01,0.001,0.0001]\n", n_users=60)
    out = tmp_path / "out"
    assert common.main(local_argv(hyper, config_file, out, "--workers=2")) == 0
    printed = capsys.readouterr().out
    assert "local search: 3 of 3 trial(s) to run, in 2 worker processes at once" in printed
    assert "3 of 3 trial(s) finished" in printed
    rows = read_csv(out / "trials.csv")
    assert [(r["trial_id"], float(r["learning_rate"]), r["status"]) for r in rows] == [
        ("trial_00000", 0.01, "completed"), ("trial_00001", 0.001, "completed"), ("trial_00002", 0.0001, "completed")]
    for row in rows:
        assert f"{row['trial_id']} {{'learning_rate': {float(row['learning_rate'])}}}: best valid" in printed
    logs = [(out / "search" / f"worker_{i}.log").read_text() for i in (0, 1)]
    assert "worker 0 of 2: 2 of 2 trial(s) finished" in logs[0] and "worker 1 of 2: 1 of 1 trial(s) finished" in logs[1]
    assert "trial_00000" in logs[0] and "trial_00002" in logs[0] and "trial_00001" not in logs[0]
    assert "trial_00001" in logs[1] and "trial_00000" not in logs[1]
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best["learning_rate"] == float(max(rows, key=lambda r: float(r["best_valid_score"]))["learning_rate"])

    assert common.main([f"--output_dir={out}", "--resume", "--workers=2"]) == 0
    again = capsys.readouterr().out
    assert "local search: 0 of 3 trial(s) to run, one after another" in again and read_csv(out / "trials.csv") == rows


def test_record_trial_merges_rows_written_by_other_workers(tmp_path):
    """Two workers, each holding only its own row, both end up in trials.csv, in trial order; a repeated sample
    (same parameter values) keeps its own trial id."""
    trials = [{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.1}]
    csv_path = str(tmp_path / "trials.csv")

    def row(index, score):
        return {"trial_id": f"trial_{index:05d}", "status": "completed", "epochs": 1, "lr": trials[index]["lr"],
                "best_valid_score": score, "trial_dir": f"/t/{index}"}

    common.record_trial(csv_path, trials, ["lr"], 2, row(2, 0.3))  # worker 0 finishes the repeat of lr=0.1 first
    common.record_trial(csv_path, trials, ["lr"], 1, row(1, 0.2))  # worker 1 knows nothing of it
    common.record_trial(csv_path, trials, ["lr"], 0, row(0, 0.1))
    rows = read_csv(csv_path)
    assert [(r["trial_id"], r["lr"], r["best_valid_score"]) for r in rows] == [
        ("trial_00000", "0.1", "0.1"), ("trial_00001", "0.2", "0.2"), ("trial_00002", "0.1", "0.3")]
    done = common.finished_trials(csv_path, trials, ["lr"])
    assert {index: r["best_valid_score"] for index, r in done.items()} == {0: 0.1, 1: 0.2, 2: 0.3}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--workers=0"], "--workers must be >= 1, got 0"),
        (["--workers=2", "--backend=ray"], "--workers is an option of --backend=local"),
        (["--worker=2/2"], "--worker must be i/n with 0 <= i < n, got '2/2'"),
    ],
)
def test_bad_workers_are_refused(tiny, tmp_path, capsys, extra, message):
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate grid [0.01]\n", n_users=5)
    argv = [a for a in local_argv(hyper, config_file, tmp_path / "out") if not (a == "--backend=local" and
                                                                                "--backend=ray" in extra)]
    assert common.main(argv + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before the search was created


@pytest.mark.parametrize("extra, shown", [([], "stopping_step=4"), (["--stopping_step=2"], "stopping_step=2")])
def test_local_banner_shows_the_trials_stopping_step(tiny, tmp_path, monkeypatch, capsys, extra, shown):
    """The banner names the stopping_step the trials run with: SASRecSPRINT.yaml's 4 (as the main job), or the
    override; never RecBole's overall default of 10 (issue 23)."""
    config_file, hyper = tiny_search_files(tmp_path, tiny, "learning_rate choice [0.01]\n")
    config = yaml.safe_load(open(config_file))
    del config["stopping_step"]  # the model's yaml decides
    with open(config_file, "w") as handle:
        yaml.safe_dump(config, handle)
    monkeypatch.setattr(local, "run_trials", lambda *args: 0)  # the banner only: nothing trains
    assert common.main(local_argv(hyper, config_file, tmp_path / "out", *extra)) == 0
    banner = [line for line in capsys.readouterr().out.splitlines() if line.startswith("local search:")]
    assert len(banner) == 1 and f"early stopping ({shown})" in banner[0], banner
    settings = json.load(open(tmp_path / "out" / common.SETTINGS_FILE))
    assert settings["stopping_step"] == int(shown.split("=")[1])


@pytest.mark.parametrize("n_workers, cpus, threads", [(8, 16, 2), (6, 16, 2), (1, 16, 16), (4, 2, 1), (3, 1, 1)])
def test_workers_share_the_cores_out(n_workers, cpus, threads):
    assert local.worker_threads(n_workers, cpus) == threads


def test_a_worker_runs_its_trials_on_its_share_of_the_cores(tmp_path, monkeypatch):
    """A worker's trials get ``worker_threads`` threads; one process alone keeps torch's setting (None)."""
    seen = []

    def fake_run_trial(params, fixed, trial_dir, **kwargs):
        seen.append(kwargs["threads"])
        raise KeyboardInterrupt  # nothing trains: the call's arguments are the point

    monkeypatch.setattr(trial, "run_trial", fake_run_trial)
    monkeypatch.setattr(local.os, "cpu_count", lambda: 16)
    settings = {"param_names": ["learning_rate"], "trials": [{"learning_rate": 0.01}], "fixed": {},
                "valid_metric": "ndcg@10"}
    assert local.run_trials(str(tmp_path), settings, [0], (0, 8)) == 1  # interrupted
    monkeypatch.setattr(local, "finish_local_search", lambda *args: 0)
    local.run_trials(str(tmp_path), settings, [0], None)
    assert seen == [2, None]

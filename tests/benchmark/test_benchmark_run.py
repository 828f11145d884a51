"""End to end on CPU: a smaller copy of the smoke spec, interrupted after its first run and resumed; the
tables and the scaling plot's data source must hold the stored numbers."""

import csv
import json
import math
import os

import pytest

import recbole_sprint.quick_start
from recbole_sprint.benchmark import load_spec, run_benchmark
from recbole_sprint.benchmark.stats import mean_std

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "recbole_sprint", "properties", "benchmark", "smoke.yaml")

# the smoke spec, smaller: 1 seed, hidden 8/16, length 5, users with 20-39 ratings, 2 epochs (4 runs of a few
# seconds); both rows keep the smoke spec's shared protocol (SASRecSPRINT, full_sequence; the SASRec row at weight 0)
FASTER = {
    "seeds": [2020],
    "sweep": {"hidden_size": [8, 16]},
    "config": {"MAX_ITEM_LIST_LENGTH": 5, "inner_size": 16, "user_inter_num_interval": "[20,40)", "epochs": 2,
               "eval_step": 1},
}


class Crash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Run the grid, crash at the start of the second run, rerun it twice; record what trained when."""
    tmp = tmp_path_factory.mktemp("bench")
    real = recbole_sprint.quick_start.run_recbole_sprint
    calls = {"first": [], "second": [], "third": []}
    phase = {"name": "first"}

    def wrapped(model, dataset, config_dict=None, **kwargs):
        if phase["name"] == "first" and calls["first"]:
            raise Crash("injected crash before the second run")
        calls[phase["name"]].append((model, dataset, config_dict["seed"], config_dict["hidden_size"],
                                     config_dict.get("sprint_attn_weight")))  # the SASRec row: weight 0
        return real(model, dataset, config_dict=config_dict, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setattr(recbole_sprint.quick_start, "run_recbole_sprint", wrapped)
        spec = load_spec(SMOKE, overrides=FASTER)
        out = str(tmp / "out")
        with pytest.raises(Crash):
            run_benchmark(spec, out, show_progress=False)
        store_after_crash = open(os.path.join(out, "runs.jsonl")).read()
        phase["name"] = "second"
        second = run_benchmark(spec, out, show_progress=False)
        phase["name"] = "third"
        third = run_benchmark(spec, out, show_progress=False)
    return {"tmp": tmp, "spec": spec, "out": out, "calls": calls, "store_after_crash": store_after_crash,
            "second": second, "third": third}


def test_resume_after_crash_skips_the_finished_run(grid):
    calls, spec = grid["calls"], grid["spec"]
    assert len(spec.cells()) == 4
    first_lines = grid["store_after_crash"].splitlines()
    assert len(first_lines) == 1 and len(calls["first"]) == 1
    first = json.loads(first_lines[0])
    # the rerun trained exactly the 3 others, not the finished one
    assert grid["second"]["n_ran"] == 3 and len(calls["second"]) == 3
    assert calls["first"][0] not in calls["second"]
    assert (first["model_class"], first["dataset"], first["seed"], first["config"]["hidden_size"],
            first["config"].get("sprint_attn_weight")) == calls["first"][0]
    lines = open(os.path.join(grid["out"], "runs.jsonl")).read().splitlines()
    assert lines[0] == first_lines[0]  # the finished run's record is untouched
    assert sorted(json.loads(line)["run_id"] for line in lines) == sorted(c.run_id for c in spec.cells())
    # checkpoints are deleted once a run is stored (the default)
    assert os.listdir(os.path.join(grid["out"], "saved")) == []
    # everything under the output folder (RecBole's log/ too), nothing in the working directory, no lock file
    assert os.listdir(grid["tmp"]) == ["out"]
    assert "log" in os.listdir(grid["out"]) and not os.path.exists(os.path.join(grid["out"], "runs.jsonl.lock"))
    # a third call trains nothing
    assert grid["third"]["n_ran"] == 0 and calls["third"] == []


def test_tables_match_stored_runs(grid):
    records = grid["third"]["records"]
    paths = grid["third"]["paths"]
    assert len(records) == 4
    for record in records:
        assert record["n_params"] == record["n_params_embedding"] + record["n_params_non_embedding"]
        assert record["n_params_embedding"] > 0 and record["n_params_non_embedding"] > 0
    by_size = {(r["model"], r["config"]["hidden_size"]): r for r in records}
    # item and position tables are linear in the hidden size
    assert by_size[("SASRec", 16)]["n_params_embedding"] == 2 * by_size[("SASRec", 8)]["n_params_embedding"]

    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    metrics = grid["spec"].table["metrics"]
    for row in rows:
        runs = [r for r in records if r["model"] == row["model"] and r["variant_label"] == row["variant"]]
        assert len(runs) == 1
        for metric in metrics:
            mean, _ = mean_std([r["test_result"][metric] for r in runs])
            assert float(row[f"ml-100k/{metric}/mean"]) == pytest.approx(mean, abs=1e-12)
        if row["model"] == "SASRecSPRINT":
            assert row["backbone"] == "SASRec" and row["ml-100k/ndcg@10/gain"] != ""
    markdown = open(paths["markdown"]).read()
    assert "↳ gain vs SASRec" in markdown and markdown.count("**") >= 2 * len(metrics)
    latex = open(paths["latex"]).read()
    assert latex.startswith(r"\begin{tabular}") and r"\toprule" in latex and r"\bottomrule" in latex


def test_scaling_plot_data_matches_stored_runs(grid):
    import matplotlib.image

    records = grid["third"]["records"]
    paths = grid["third"]["paths"]
    assert len(paths["plots"]) == 2  # ndcg@10 and averagepopularity@10 for ml-100k
    for png in paths["plots"]:
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(png).shape[0] > 100
    with open(paths["scaling_csv"]) as f:
        points = list(csv.DictReader(f))
    assert len(points) == 2 * 2 * 2  # metrics x models x sizes
    for point in points:
        run = next(r for r in records if r["model"] == point["model"] and r["variant_label"] == point["variant"])
        assert int(point["n_params_non_embedding"]) == run["n_params_non_embedding"]
        assert float(point["mean"]) == pytest.approx(run["test_result"][point["metric"]], abs=1e-12)
    for metric in ("ndcg@10", "averagepopularity@10"):
        for model in ("SASRec", "SASRecSPRINT"):
            small, large = sorted((p for p in points if p["metric"] == metric and p["model"] == model),
                                  key=lambda p: int(p["n_params_non_embedding"]))
            # two points: the power law y = a x^b goes through both
            x1, x2 = int(small["n_params_non_embedding"]), int(large["n_params_non_embedding"])
            y1, y2 = float(small["mean"]), float(large["mean"])
            assert float(small["fit_b"]) == pytest.approx(math.log(y2 / y1) / math.log(x2 / x1))
            assert float(small["fit_a"]) * x1 ** float(small["fit_b"]) == pytest.approx(y1)

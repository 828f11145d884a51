"""benchmarks/results: the committed stores, tables and write-up agree. Every stored run is a cell of its spec (run
id, label, dataset, seed) and was evaluated with history masking; the committed tables are what the stores render;
every number of the write-up's tables (README.md, below the ``<!-- table:NAME -->`` markers) is the mean of
the stored runs it names, over exactly the seeds it lists."""

import json
import os
import statistics

import pytest

from recbole_sprint.benchmark import load_spec
from recbole_sprint.benchmark.report import render
from .scripts import load_benchmark_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPO, "benchmarks", "results")
SPECS = os.path.join(REPO, "recbole_sprint", "properties", "benchmark")
STORES = ["paper_main", "paper_depth", "paper_scaling", "paper_hstu_ffn", "paper_bert4rec", "sprint_every"]
WRITEUP_TABLES = ["paper_main", "paper_depth", "paper_hstu_ffn", "paper_bert4rec"]
# write-up column -> (stored metric, decimals)
COLUMNS = {"NDCG@5": ("ndcg@5", 4), "HR@1": ("hit@1", 4), "HR@5": ("hit@5", 4), "HR@10": ("hit@10", 4),
           "Fair-0.8@1": ("tailexposure@1", 3), "ARP@5": ("arp@5", 0), "TailCoverage@10": ("tailcoverage@10", 3),
           "HistoryShare@1": ("historyshare@1", 3), "SpectralCollapse": ("spectralcollapse", 3)}


@pytest.fixture(autouse=True)
def without_the_datasets(monkeypatch):
    """The specs name ../shared/datasets, which a clean checkout (CI) may not have beside it; a run id depends on
    neither where the data lies nor the data itself, so these checks need only the specs and the stores (the specs'
    own validation, which builds each cell's config from its dataset, is tests/benchmark/test_benchmark_spec.py's)."""
    from recbole_sprint.benchmark import spec as spec_module

    monkeypatch.setattr(spec_module, "resolve_data_path", lambda data_path, name, spec_dir: "/datasets-not-needed")
    monkeypatch.setattr(spec_module, "_check_configs", lambda spec: None)


def records(name):
    with open(os.path.join(RESULTS, name, "runs.jsonl")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def spec(name):
    return load_spec(os.path.join(SPECS, f"{name}.yaml"))


def formatted(value, decimals):
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("0.") else text


def committed_table(name):
    """The write-up's table ``name``: the lines below its ``<!-- table:NAME -->`` marker, up to the blank line."""
    with open(os.path.join(RESULTS, "README.md")) as handle:
        text = handle.read()
    marker = f"<!-- table:{name} -->\n"
    assert marker in text, f"the write-up has no table {name}"
    return text.split(marker, 1)[1].split("\n\n", 1)[0]


def writeup_table(name):
    """The rows of the write-up's table ``name`` as dicts (header -> cell)."""
    lines = committed_table(name).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


@pytest.mark.parametrize("name", STORES)
def test_every_stored_run_is_a_masked_cell_of_its_spec(name):
    cells = {cell.run_id: cell for cell in spec(name).cells()}
    stored = records(name)
    assert stored
    for record in stored:
        cell = cells.get(record["run_id"])
        assert cell is not None, f"{record['model']} {record['dataset']} seed {record['seed']}: not a cell of {name}"
        assert (record["model"], record["dataset"], record["seed"]) == (cell.model, cell.dataset, cell.seed)
        assert record["eval_exclude_history"] is True
    assert len({record["run_id"] for record in stored}) == len(stored)  # nothing trained twice


@pytest.mark.parametrize("name", STORES)
def test_committed_tables_are_what_the_store_renders(name, tmp_path):
    pytest.importorskip("matplotlib")
    paths = render(spec(name), records(name), str(tmp_path))
    for kind in ("markdown", "csv"):
        with open(paths[kind]) as rendered, open(os.path.join(RESULTS, name, os.path.basename(paths[kind]))) as kept:
            assert rendered.read() == kept.read(), f"{name}/{os.path.basename(paths[kind])} is stale: render it again"


@pytest.mark.parametrize("name", WRITEUP_TABLES)
def test_every_number_of_the_writeup_is_the_store_s_mean(name):
    rows = writeup_table(name)
    assert rows
    stored = records(name)
    named = set()
    for row in rows:
        runs = [r for r in stored if r["dataset"] == row["dataset"] and r["model"] == row["row"]
                and str(r["variant"].get("n_layers")) == row.get("layers", "None")]
        assert sorted(str(r["seed"]) for r in runs) == row["seeds"].split(","), row
        for column, (metric, decimals) in COLUMNS.items():
            mean = statistics.mean(r["test_result"][metric] for r in runs)
            assert row[column] == formatted(mean, decimals), f"{row['dataset']} {row['row']} {column}"
        named.update(r["run_id"] for r in runs)
    assert named == {r["run_id"] for r in stored}  # the write-up names every stored run


def test_every_number_of_the_scaling_table_is_the_store_s_mean():
    rows = writeup_table("paper_scaling")
    stored = records("paper_scaling")
    named = set()
    for row in rows:
        runs = [r for r in stored if (r["dataset"], r["model"], r["variant"]["size"]) == (row["dataset"], row["row"],
                                                                                          row["size"])]
        assert sorted(str(r["seed"]) for r in runs) == row["seeds"].split(","), row
        assert row["layers x d"] == f"{runs[0]['config']['n_layers']} x {runs[0]['config']['hidden_size']}"
        assert row["non-embedding"] == f"{runs[0]['n_params_non_embedding'] / 1e6:.2f}M"
        for column, (metric, decimals) in COLUMNS.items():
            mean = statistics.mean(r["test_result"][metric] for r in runs)
            assert row[column] == formatted(mean, decimals), f"{row['row']} {row['size']} {column}"
        named.update(r["run_id"] for r in runs)
    assert named == {r["run_id"] for r in stored}  # the write-up names every stored run


def test_writeup_tables_script_prints_the_committed_tables():
    """``python benchmarks/writeup_tables.py`` regenerates the write-up's tables exactly."""
    script = load_benchmark_script("writeup_tables")
    for name, with_layers in (("paper_main", False), ("paper_depth", True), ("paper_hstu_ffn", False),
                              ("paper_bert4rec", False)):
        assert script.table(script.records(RESULTS, name), with_layers) == committed_table(name), name
    stores = {name: script.records(RESULTS, name) for name in ("paper_main", "paper_depth")}
    assert script.unmasked_table(stores) == committed_table("unmasked")
    assert script.scaling_table(script.records(RESULTS, "paper_scaling")) == committed_table("paper_scaling")


def test_writeup_comparison_by_hand():
    """Gain over the common seeds (relative, sign flipped for smaller-is-better, points for tail shares) and the paired
    t-test: differences .1 and .2 give t = .15 / (.0707 / sqrt 2) = 3, two-sided p = 2 (1 - F_t1(3)) = .2048."""
    script = load_benchmark_script("writeup_tables")

    def runs(values):
        return [{"seed": seed, "test_result": {"ndcg@5": v, "arp@5": 10 * v, "tailexposure@1": v}}
                for seed, v in values.items()]

    model, base = runs({42: 0.2, 43: 0.4, 44: 9.0}), runs({42: 0.1, 43: 0.2})  # seed 44: no pair, left out
    gain, p, n = script.compare(model, base, "ndcg@5")
    assert (round(gain, 6), round(p, 4), n) == (round(100 * 0.15 / 0.15, 6), 0.2048, 2)
    assert round(script.compare(model, base, "arp@5")[0], 6) == -100.0  # higher ARP is worse
    assert round(script.compare(model, base, "tailexposure@1")[0], 6) == 15.0  # percentage points


def test_depth_cells_without_a_common_seed_are_named_not_compared(capsys):
    """A depth where the SPRINT row and its backbone have no seed in common prints which seeds each has, never a
    gain of nan over 0 seeds."""
    script = load_benchmark_script("writeup_tables")
    metrics = {m: 0.1 for m in script.COMPARED}

    def run(model, depth, seed):
        return {"dataset": "d", "model": model, "variant": {"n_layers": depth}, "seed": seed, "test_result": metrics}

    script.depth_comparisons([run("SASRec", 8, 43), run("SASRecSPRINT", 8, 42)], [])
    out = capsys.readouterr().out
    assert "- d SASRecSPRINT vs SASRec, 8 layers: no seed in both rows (seeds [42] vs [43])" in out
    assert "nan" not in out


def test_every_weight_search_has_its_table_and_it_is_the_search_s_records():
    """Each committed SPRINT-weight search (``benchmarks/results/tune/<search>/``) has its table in the write-up, below
    ``<!-- table:tune/<search> -->``, and that table is what ``writeup_tables.py`` renders from its records."""
    script = load_benchmark_script("writeup_tables")
    names = script.searches(RESULTS)
    assert {"SASRecSPRINT_amazon-beauty", "HSTUSPRINT_amazon-beauty", "SASRec++-SPRINT_ml-1m-3k",
            "BERT4RecSPRINT_ml-1m-3k_paper_bert4rec_e80"} <= set(names)
    for name in names:
        assert script.search_table(RESULTS, name) == committed_table(f"tune/{name}"), name


def test_search_table_by_hand(tmp_path):
    """A search over λ_attn with λ_ffn / λ_emb fixed: the completed trials in order (the one still running left
    out), the fixed weights filled in, the chosen trial in bold, then the spec store's backbone and SPRINT runs at the
    search's dataset and training seed (not another seed's, not another dataset's) and paper_main's Pop there."""
    script = load_benchmark_script("writeup_tables")
    folder = tmp_path / "tune" / "XSPRINT_d"
    folder.mkdir(parents=True)
    test_columns = [f"test_{metric}" for metric, _ in COLUMNS.values()]
    header = ["trial_id", "status", "epochs", "sprint_attn_weight", "best_valid_score"] + test_columns
    rows = [["trial_00001", "completed", "35", "2.5", "0.25"], ["trial_00002", "running", "", "5", ""],
            ["trial_00000", "completed", "60", "0.0", "0.125"]]
    (folder / "trials.csv").write_text(",".join(header) + "\n" + "\n".join(",".join(row + ["0.5"] * len(test_columns))
                                                                           for row in rows) + "\n")
    (folder / "best_trial.json").write_text(json.dumps({"trial_id": "trial_00001"}))
    (folder / "search_settings.json").write_text(json.dumps({
        "spec": "/elsewhere/paper_x.yaml", "spec_model": "X-SPRINT", "dataset": "d", "valid_metric": "ndcg@5",
        "seed": 0, "fixed": {"seed": 42, "sprint_ffn_weight": 0.01, "sprint_emb_weight": 0.1}}))
    result = {metric: 0.25 for metric, _ in COLUMNS.values()}

    def run(model, seed=42, dataset="d", **weights):
        return {"run_id": f"{model}{seed}{dataset}", "model": model, "dataset": dataset, "seed": seed,
                "config": {"epochs": 60, **weights}, "best_valid_score": 0.5, "test_result": result}

    for store, runs in (("paper_x", [run("X-SPRINT", sprint_attn_weight=5.0), run("X", seed=43), run("X"),
                                     run("X", dataset="e"), run("Y")]),
                        ("paper_main", [run("Pop"), run("X", sprint_attn_weight=1.0)])):
        (tmp_path / store).mkdir()
        (tmp_path / store / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    lines = script.search_table(str(tmp_path), "XSPRINT_d").splitlines()
    assert lines[0] == ("| trial | λ_attn / λ_ffn / λ_emb | epochs | valid NDCG@5 | NDCG@5 | HR@1 | HR@5 | HR@10 | "
                        "Fair-0.8@1 | ARP@5 | TailCoverage@10 | HistoryShare@1 | SpectralCollapse |")
    assert lines[2:] == [
        "| 0 | 0 / 0.01 / 0.1 | 60 | .1250 | .5000 | .5000 | .5000 | .5000 | .500 | 0 | .500 | .500 | .500 |",
        "| **1 (chosen)** | 2.5 / 0.01 / 0.1 | 35 | .2500 | .5000 | .5000 | .5000 | .5000 | .500 | 0 | .500 | .500 "
        "| .500 |",
        "| *paper_x: X* | 0 / 0 / 0 | ≤ 60 | .5000 | .2500 | .2500 | .2500 | .2500 | .250 | 0 | .250 | .250 | .250 |",
        "| *paper_x: X-SPRINT* | 5 / 0 / 0 | ≤ 60 | .5000 | .2500 | .2500 | .2500 | .2500 | .250 | 0 | .250 | .250 "
        "| .250 |",
        "| *paper_main: Pop* |  | ≤ 60 | .5000 | .2500 | .2500 | .2500 | .2500 | .250 | 0 | .250 | .250 | .250 |"]
    assert script.searches(str(tmp_path)) == ["XSPRINT_d"]
    # unfinished (no best_trial.json): the same lines, none chosen; a search with no completed trial is none
    (folder / "best_trial.json").unlink()
    unfinished = script.search_table(str(tmp_path), "XSPRINT_d").splitlines()
    assert unfinished[3].startswith("| 1 | 2.5 / 0.01 / 0.1 | 35 |") and unfinished[4:] == lines[4:]
    (tmp_path / "tune" / "YSPRINT_d").mkdir()
    (tmp_path / "tune" / "YSPRINT_d" / "trials.csv").write_text(",".join(header) + "\n" + ",".join(rows[1]) + "\n")
    assert script.searches(str(tmp_path)) == ["XSPRINT_d"]

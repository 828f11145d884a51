"""``--models`` / ``--datasets`` choose which cells of a spec run, without changing any run id (no training here:
the cell selection, and the command line with the training replaced by a fake record)."""

import json
import os

import pytest
import yaml

import recbole_sprint.quick_start
from recbole_sprint.benchmark import load_spec
from recbole_sprint.benchmark import runner
from recbole_sprint.benchmark.__main__ import main
from recbole_sprint.benchmark.spec import select_cells

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = os.path.join(REPO, "recbole_sprint", "properties", "benchmark")
RESULTS = os.path.join(REPO, "benchmarks", "results")

OFF = {"sprint_attn_weight": 0.0, "sprint_ffn_weight": 0.0, "sprint_emb_weight": 0.0}
SPEC = {
    "name": "filtered",
    # rows: SASRec (= SASRecSPRINT with weights 0), SASRecSPRINT, GRU4Rec
    "models": [{"name": "SASRecSPRINT", "label": "SASRec", "config": OFF}, "SASRecSPRINT", "GRU4Rec"],
    "datasets": ["ml-100k", "ml-1m"],  # ml-1m: a dataset RecBole downloads, never loaded here
    "seeds": [1, 2],
    "config": {"metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "train_neg_sample_args": None},
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return load_spec(str(path))


def keys(cells):
    return [(c.dataset, c.model, c.seed) for c in cells]


def test_no_filter_is_the_whole_grid(spec):
    assert len(spec.cells()) == 2 * 3 * 2
    assert [c.run_id for c in select_cells(spec)] == [c.run_id for c in spec.cells()]


def test_filter_by_label_selects_only_that_row(spec):
    cells = select_cells(spec, models="SASRec")
    assert keys(cells) == [(d, "SASRec", s) for d in ("ml-100k", "ml-1m") for s in (1, 2)]
    assert {c.model_name for c in cells} == {"SASRecSPRINT"}  # the labelled baseline, not a plain SASRec
    assert keys(select_cells(spec, models="GRU4Rec")) == [(d, "GRU4Rec", s) for d in ("ml-100k", "ml-1m")
                                                          for s in (1, 2)]


def test_filter_by_model_name_selects_every_entry_of_that_class(spec):
    cells = select_cells(spec, models="SASRecSPRINT")
    assert keys(cells) == [(d, m, s) for d in ("ml-100k", "ml-1m") for m in ("SASRec", "SASRecSPRINT") for s in (1, 2)]
    # a list, blanks and a repeat are accepted
    assert keys(select_cells(spec, models=" SASRecSPRINT,, SASRecSPRINT")) == keys(cells)
    assert keys(select_cells(spec, models=["SASRec", "GRU4Rec"])) == [
        (d, m, s) for d in ("ml-100k", "ml-1m") for m in ("SASRec", "GRU4Rec") for s in (1, 2)]


def test_filter_by_dataset_and_combined(spec):
    assert keys(select_cells(spec, datasets="ml-1m")) == [(c.dataset, c.model, c.seed) for c in spec.cells()
                                                          if c.dataset == "ml-1m"]
    assert keys(select_cells(spec, datasets="ml-1m,ml-100k")) == keys(spec.cells())  # grid order, not the option's
    assert keys(select_cells(spec, models="SASRecSPRINT", datasets="ml-1m")) == [
        ("ml-1m", "SASRec", 1), ("ml-1m", "SASRec", 2), ("ml-1m", "SASRecSPRINT", 1), ("ml-1m", "SASRecSPRINT", 2)]


def test_filtered_cells_keep_the_ids_of_the_whole_grid(spec):
    whole = {(c.dataset, c.model, c.seed): (c.run_id, c.config) for c in spec.cells()}
    for models, datasets in (("SASRec", None), ("SASRecSPRINT", "ml-1m"), (None, "ml-100k"), ("GRU4Rec,SASRec", None)):
        cells = select_cells(spec, models, datasets)
        assert cells
        for cell in cells:
            assert (cell.run_id, cell.config) == whole[(cell.dataset, cell.model, cell.seed)]


@pytest.mark.parametrize("models, datasets, message", [
    ("Foo", None, "--models: no model 'Foo' in spec filtered; choose from SASRec, SASRecSPRINT, GRU4Rec"),
    ("SASRec,Foo,Bar", None, "--models: no model 'Foo', 'Bar' in spec filtered; choose from SASRec, SASRecSPRINT, "
                             "GRU4Rec"),
    ("sasrec", None, "--models: no model 'sasrec' in spec filtered"),  # names are case-sensitive, as in the spec
    (",", None, "--models: no model given; choose from SASRec, SASRecSPRINT, GRU4Rec"),
    (None, "ml-1m-3k", "--datasets: no dataset 'ml-1m-3k' in spec filtered; choose from ml-100k, ml-1m"),
    ("SASRec", "ml-100k,beauty", "--datasets: no dataset 'beauty' in spec filtered; choose from ml-100k, ml-1m"),
])
def test_a_name_that_matches_nothing_is_an_error(spec, models, datasets, message):
    with pytest.raises(ValueError) as error:
        select_cells(spec, models, datasets)
    assert message in str(error.value)


def fake_record(cell, output_dir, keep_checkpoints=False):
    return {"run_id": cell.run_id, "model": cell.model, "model_class": cell.model_name, "dataset": cell.dataset,
            "seed": cell.seed, "variant": cell.variant, "variant_label": cell.variant_label, "config": cell.config,
            "test_result": {"recall@10": 0.1 * cell.seed, "ndcg@10": 0.05 * cell.seed}}


@pytest.fixture
def fake_training(monkeypatch):
    """run_cell replaced by a fake record; the real trainer must not be reached."""
    trained = []

    def fake(cell, output_dir, keep_checkpoints=False):
        trained.append(cell.run_id)
        return fake_record(cell, output_dir, keep_checkpoints)

    def fail(*args, **kwargs):
        raise AssertionError("a real run started")

    monkeypatch.setattr(runner, "run_cell", fake)
    monkeypatch.setattr(recbole_sprint.quick_start, "run_recbole_sprint", fail)
    return trained


def test_cli_filter_with_shard_then_unfiltered_run_skips_the_stored_cells(tmp_path, capsys, fake_training):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    spec = load_spec(str(path))
    out = str(tmp_path / "out")
    # expected from the whole grid, not from select_cells: every SASRecSPRINT-class cell of ml-1m, ids as in the grid
    selected = [c for c in spec.cells() if c.dataset == "ml-1m" and c.model_name == "SASRecSPRINT"]
    assert len(selected) == 4
    # the shard splits the selected cells, not the whole grid
    assert main([str(path), "--models", "SASRecSPRINT", "--datasets", "ml-1m", "--shard", "1/2",
                 "--output_dir", out]) == 0
    assert fake_training == [c.run_id for c in selected[1::2]]
    assert main([str(path), "--models=SASRecSPRINT", "--datasets=ml-1m", "--shard=0/2", "--output_dir", out]) == 0
    assert sorted(fake_training) == sorted(c.run_id for c in selected)
    with open(os.path.join(out, "runs.jsonl")) as f:
        assert {json.loads(line)["run_id"] for line in f} == {c.run_id for c in selected}
    # the unfiltered spec trains only what is missing: the filtered runs are its own runs
    del fake_training[:]
    assert main([str(path), "--output_dir", out]) == 0
    assert fake_training == [c.run_id for c in spec.cells() if c.run_id not in {s.run_id for s in selected}]
    capsys.readouterr()


def test_cli_filter_with_parallel_hands_only_the_selected_cells_to_ray(tmp_path, monkeypatch, fake_training):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    handed = []

    def fake_ray(todo, output_dir, store, bar, address, keep_checkpoints):
        handed.extend(cell.run_id for cell in todo)
        for cell in todo:
            store.append(fake_record(cell, output_dir))

    monkeypatch.setattr(runner, "_run_ray", fake_ray)
    assert main([str(path), "--models", "GRU4Rec", "--parallel", "--output_dir", str(tmp_path / "out")]) == 0
    assert handed == [c.run_id for c in select_cells(load_spec(str(path)), models="GRU4Rec")] and len(handed) == 4


def test_cli_bad_name_exits_2_before_anything_runs(tmp_path, capsys, fake_training):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    assert main([str(path), "--models", "SASRec,Foo", "--output_dir", str(out)]) == 2
    assert "--models: no model 'Foo' in spec filtered; choose from SASRec, SASRecSPRINT, GRU4Rec" in capsys.readouterr().err
    assert main([str(path), "--datasets", "ml-20m", "--shard", "0/2", "--output_dir", str(out)]) == 2
    assert "--datasets: no dataset 'ml-20m' in spec filtered; choose from ml-100k, ml-1m" in capsys.readouterr().err
    assert not out.exists() and not fake_training


def test_stored_gpu_runs_are_cells_of_the_shipped_specs_under_history_masking(monkeypatch):
    """benchmarks/results/paper_main/runs.jsonl holds GPU runs of the shipped spec (eighth session): every stored
    run is one of its cells (same run id: the write-up's numbers are the spec's rows), each was evaluated without
    the users' histories, and the SASRec / SASRec++ rows of ml-1m-3k, which the write-up discusses, are complete."""
    monkeypatch.chdir(REPO)
    if not os.path.isdir(os.path.join(REPO, "..", "shared", "datasets", "ml-1m-3k")):
        pytest.skip("../shared/datasets is not next to this checkout")
    spec = load_spec(os.path.join(SPECS, "paper_main.yaml"))
    cells = {cell.run_id: cell for cell in spec.cells()}
    with open(os.path.join(RESULTS, "paper_main", "runs.jsonl")) as f:
        stored = [json.loads(line) for line in f]
    assert stored and all(record["run_id"] in cells for record in stored)
    assert all(record["eval_exclude_history"] is True for record in stored)
    for record in stored:
        cell = cells[record["run_id"]]
        assert (record["model"], record["dataset"], record["seed"]) == (cell.model, cell.dataset, cell.seed)
    discussed = select_cells(spec, models="Pop,SASRecSPRINT,SASRecPPSPRINT", datasets="ml-1m-3k")
    assert {c.run_id for c in discussed if c.seed in (42, 43)} <= {r["run_id"] for r in stored}


def test_python_api_run_benchmark_takes_the_filters(tmp_path, fake_training):
    from recbole_sprint.benchmark import run_benchmark

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    spec = load_spec(str(path))
    result = run_benchmark(spec, output_dir=str(tmp_path / "out"), show_progress=False, models="SASRecSPRINT",
                           datasets=["ml-1m"])
    selected = [c.run_id for c in spec.cells() if c.dataset == "ml-1m" and c.model_name == "SASRecSPRINT"]
    assert fake_training == selected and result["n_ran"] == len(selected)
    assert os.path.isfile(result["paths"]["markdown"])


def test_cli_rerun_before_runs_older_records_again_once_and_resumes(tmp_path, capsys, monkeypatch):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    cells = load_spec(str(path)).cells()
    selected = [c.run_id for c in cells if c.dataset == "ml-1m" and c.model_name == "SASRecSPRINT"]
    out = str(tmp_path / "out")
    trained, now = [], ["2026-01-01T00:00:00"]

    def fake(cell, output_dir, keep_checkpoints=False):
        trained.append(cell.run_id)
        return {**fake_record(cell, output_dir), "finished_at": now[0]}

    monkeypatch.setattr(runner, "run_cell", fake)
    filters = ["--models", "SASRecSPRINT", "--datasets", "ml-1m", "--output_dir", out]
    assert main([str(path), *filters]) == 0 and trained == selected
    del trained[:]
    now[0] = "2026-12-01T00:00:00"
    assert main([str(path), *filters, "--rerun_before", "2026-06-01T00:00:00", "--shard", "0/2"]) == 0
    assert trained == selected[0::2]  # only the old records of this shard
    assert main([str(path), *filters, "--rerun_before", "2026-06-01T00:00:00"]) == 0
    assert trained == selected[0::2] + selected[1::2]  # resumed: the new records are not run a third time
    assert main([str(path), *filters]) == 0 and len(trained) == 4  # without the option: nothing to run
    assert main([str(path), *filters, "--rerun_before", "yesterday"]) == 2
    assert "--rerun_before must be a time YYYY-MM-DDTHH:MM:SS" in capsys.readouterr().err


def test_cli_done_in_skips_the_cells_another_spec_has_stored_identically(tmp_path, capsys, fake_training):
    """A depth sweep beside a main table: its cells whose training is identical to a stored main-table run (same
    class, dataset, seed and config, its sweep value included) are not trained again; a cell that differs in any
    config value is; the sweep's own store does not receive copies. A folder without a store is an error."""
    main_spec, sweep_spec = tmp_path / "main.yaml", tmp_path / "sweep.yaml"
    base = {**SPEC, "datasets": ["ml-100k"], "config": {**SPEC["config"], "hidden_size": 64}}
    main_spec.write_text(yaml.safe_dump(base))
    sweep_config = {k: v for k, v in base["config"].items() if k != "hidden_size"}
    sweep_spec.write_text(yaml.safe_dump({**base, "name": "sweep", "config": sweep_config,
                                          "sweep": {"hidden_size": [64, 128]}}))
    main_out, sweep_out = str(tmp_path / "main"), str(tmp_path / "sweep")
    assert main([str(main_spec), "--output_dir", main_out]) == 0
    assert len(fake_training) == 6  # 3 rows x 2 seeds
    del fake_training[:]
    assert main([str(sweep_spec), "--output_dir", sweep_out, "--done_in", main_out]) == 0
    sweep_cells = load_spec(str(sweep_spec)).cells()
    wider = [c.run_id for c in sweep_cells if c.config["hidden_size"] == 128]
    assert sorted(fake_training) == sorted(wider) and len(wider) == 6  # the 64-wide cells: stored in main
    with open(os.path.join(sweep_out, "runs.jsonl")) as f:
        assert sorted(json.loads(line)["run_id"] for line in f) == sorted(wider)
    # the same sweep with one config value changed: nothing of main is identical, every cell trains
    del fake_training[:]
    sweep_spec.write_text(yaml.safe_dump({**base, "name": "sweep2", "config": {**sweep_config, "epochs": 3},
                                          "sweep": {"hidden_size": [64, 128]}}))
    assert main([str(sweep_spec), "--output_dir", str(tmp_path / "sweep2"), "--done_in", main_out]) == 0
    assert len(fake_training) == 12
    capsys.readouterr()
    assert main([str(sweep_spec), "--output_dir", sweep_out, "--done_in", str(tmp_path / "nowhere")]) == 2
    assert "--done_in: no results store" in capsys.readouterr().err

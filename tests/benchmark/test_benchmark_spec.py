"""A spec naming an unknown model, dataset, metric, size or sweep key fails before anything trains."""

import os

import pytest
import yaml

import recbole_sprint.quick_start
from recbole_sprint.benchmark import SpecError, load_spec
from recbole_sprint.benchmark.__main__ import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = os.path.join(REPO, "recbole_sprint", "properties", "benchmark")

OFF = {"sprint_attn_weight": 0.0, "sprint_ffn_weight": 0.0, "sprint_emb_weight": 0.0}
GOOD = {
    "name": "t",
    "models": [{"name": "SASRecSPRINT", "label": "SASRec", "config": OFF}, "SASRecSPRINT"],
    "datasets": ["ml-100k"],
    "seeds": [1, 2],
    "config": {"metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "train_neg_sample_args": None},
}


def write(tmp_path, **changes):
    spec = {**GOOD, **changes}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.fixture
def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a run started although the spec is invalid")

    monkeypatch.setattr(recbole_sprint.quick_start, "run_recbole_sprint", fail)


@pytest.mark.parametrize("changes, entry, name", [
    ({"models": ["SASRec", "SASRecc"]}, "models[1]", "SASRecc"),
    ({"datasets": ["ml-100k", "no-such-data"]}, "datasets[1]", "no-such-data"),
    ({"config": {"metrics": ["Recall", "NDGC"], "valid_metric": "Recall@10"}}, "config.metrics[1]", "NDGC"),
    ({"config": {"metrics": ["Recall"], "valid_metric": "NDCG@10"}}, "config.valid_metric", "NDCG@10"),
    ({"config": {"metrics": ["Recall"], "valid_metric": "Recall@10",
                 "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}}, "models[0]",
     "train_neg_sample_args"),  # RecBole: no sampled negatives with loss_type CE
    ({"table": {"metrics": ["hit@10"]}}, "table.metrics[0]", "hit@10"),
    ({"scaling": {"metrics": ["ndcg@5"]}}, "scaling.metrics[0]", "ndcg@5"),
    ({"sizes": ["XS", "Huge"]}, "sizes[1]", "Huge"),
    ({"sweep": {"n_layer": [1, 2]}}, "sweep.n_layer", "n_layer"),
    ({"seedz": [1]}, "seedz", "seedz"),
])
def test_invalid_spec_fails_before_training(tmp_path, monkeypatch, capsys, no_training, changes, entry, name):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, **changes)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert entry in str(error.value) and name in str(error.value)
    # the command line: exit status 2 and the entry named on stderr, nothing trained (no_training)
    assert main([path, "--output_dir", str(tmp_path / "out")]) == 2
    assert entry in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_valid_spec_grid_and_priorities(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, sizes=["XXS", "XS"], sweep={"learning_rate": [0.01, 0.001]},
                 models=[{"name": "SASRecSPRINT", "label": "SASRec", "config": OFF},
                         {"name": "SASRecSPRINT", "config": {"sprint_attn_weight": 1.0, "n_layers": 9}}])
    spec = load_spec(path)
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 2 * 2  # models x sizes x sweep x seeds
    cell = next(c for c in cells if c.model == "SASRecSPRINT" and c.variant == {"size": "XS", "learning_rate": 0.001})
    # the size preset overrides the model's config; sweep and seed are applied last
    assert cell.config["n_layers"] == 2 and cell.config["hidden_size"] == 128 and cell.config["n_heads"] == 2
    assert cell.config["inner_size"] == 512 and cell.config["sprint_attn_weight"] == 1.0
    assert cell.config["learning_rate"] == 0.001 and cell.config["seed"] in (1, 2)
    assert cell.variant_label == "XS, learning_rate=0.001"
    assert len({c.run_id for c in cells}) == len(cells)
    assert [c.run_id for c in load_spec(path).cells()] == [c.run_id for c in cells]  # stable across loads


def test_data_path_resolution(tmp_path, monkeypatch):
    """A relative data_path is tried against the spec's folder first, then against the cwd."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "data" / "toy").mkdir(parents=True)
    (tmp_path / "data" / "toy" / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t1\t5\n")
    spec_file = tmp_path / "specs" / "s.yaml"
    config = {**GOOD["config"], "load_col": {"inter": ["user_id", "item_id", "timestamp"]}}
    spec_file.write_text(yaml.safe_dump({**GOOD, "config": config, "datasets": ["toy"], "data_path": "../data"}))
    monkeypatch.chdir(tmp_path / "specs")
    assert load_spec(str(spec_file)).datasets[0][1] == str(tmp_path / "data")  # spec-relative
    spec_file.write_text(yaml.safe_dump({**GOOD, "config": config, "datasets": ["toy"], "data_path": "data"}))
    monkeypatch.chdir(tmp_path)
    assert load_spec(str(spec_file)).datasets[0][1] == str(tmp_path / "data")  # cwd-relative
    monkeypatch.chdir(tmp_path / "specs")
    with pytest.raises(SpecError, match=r"datasets\[0\].*toy"):
        load_spec(str(spec_file))


def test_shipped_specs_validate(monkeypatch):
    """The smoke spec validates; the paper specs validate from the repository root, or fail only on a model or
    metric of the models / long-tail metrics issues that this checkout does not have yet."""
    from recbole.evaluator.register import metrics_dict

    from recbole_sprint.utils import get_model

    monkeypatch.chdir(REPO)
    smoke = load_spec(os.path.join(SPECS, "smoke.yaml"))
    assert len(smoke.cells()) == 8
    if not os.path.isdir(os.path.join(REPO, "..", "shared", "datasets")):
        pytest.skip("../shared/datasets is not next to this checkout")
    pending = {m for m in ("arp", "tailcoverage", "tailrecall", "tailexposure", "spectralcollapse",
                           "informationabundance") if m not in metrics_dict}
    for model in ("BERT4RecSPRINT", "HSTU", "HSTUSPRINT"):
        try:
            get_model(model)
        except (ValueError, ImportError):
            pending.add(model.lower())
    for name in ("paper_amazon-beauty.yaml", "paper_ml-1m-3k.yaml"):
        try:
            spec = load_spec(os.path.join(SPECS, name))
        except SpecError as error:
            assert any(f"[{p}]" in str(error).lower() for p in pending), str(error)
        else:
            assert not pending
            assert spec.sizes == ["XXS", "XS", "Small", "Base"] and len(spec.cells()) == 6 * 4 * 3


def test_model_label_names_the_row_and_the_class_trains(tmp_path):
    off = {"sprint_attn_weight": 0.0, "sprint_ffn_weight": 0.0, "sprint_emb_weight": 0.0}
    spec = load_spec(write(tmp_path, models=[{"name": "SASRecSPRINT", "label": "SASRec", "config": off},
                                             "SASRecSPRINT"]))
    cells = spec.cells()
    assert [(c.model, c.model_name) for c in cells[::2]] == [("SASRec", "SASRecSPRINT"), ("SASRecSPRINT", "SASRecSPRINT")]
    plain = load_spec(write(tmp_path, models=["SASRec"])).cells()[0]
    assert plain.model_name == "SASRec" and plain.run_id != cells[0].run_id  # the class is part of the run's identity
    with pytest.raises(SpecError, match=r"lists a model \(label\) twice"):
        load_spec(write(tmp_path, models=[{"name": "SASRecSPRINT", "label": "SASRec"}, "SASRec"]))
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['lable'\]; allowed: name, label, config"):
        load_spec(write(tmp_path, models=[{"name": "SASRecSPRINT", "lable": "SASRec"}]))


def test_dataset_config_applies_to_that_datasets_runs_only(tmp_path):
    """Weights searched per dataset: the entry's dataset_config overrides its config on that dataset; the other
    dataset's runs keep their run ids, so adding a dataset's values keeps the stored runs of the others."""
    entry = {"name": "SASRecSPRINT", "label": "SASRecSPRINT-tuned", "config": {"sprint_attn_weight": 2.5}}
    plain = load_spec(write(tmp_path, datasets=["ml-100k", "ml-1m"], models=[entry])).cells()
    by_dataset = load_spec(write(tmp_path, datasets=["ml-100k", "ml-1m"], models=[
        {**entry, "dataset_config": {"ml-1m": {"sprint_attn_weight": 0.1, "sprint_ffn_weight": 0.001}}}])).cells()
    for before, after in zip(plain, by_dataset):
        assert (before.dataset, before.seed) == (after.dataset, after.seed)
        if after.dataset == "ml-100k":
            assert after.config == before.config and after.run_id == before.run_id
        else:
            assert after.config == {**before.config, "sprint_attn_weight": 0.1, "sprint_ffn_weight": 0.001}
            assert after.run_id != before.run_id
    with pytest.raises(SpecError, match=r"'models\[0\].dataset_config' \(SASRecSPRINT-tuned\): no dataset ml-20m "
                                        r"in 'datasets'; choose from ml-100k, ml-1m"):
        load_spec(write(tmp_path, datasets=["ml-100k", "ml-1m"], models=[
            {**entry, "dataset_config": {"ml-20m": {"sprint_attn_weight": 0.1}}}]))
    with pytest.raises(SpecError, match=r"'models\[0\].dataset_config.ml-1m' must be a mapping"):
        load_spec(write(tmp_path, datasets=["ml-100k", "ml-1m"], models=[{**entry, "dataset_config": {"ml-1m": 0.1}}]))


# Like with like (issue 23): a SPRINT row and the backbone row the table compares it with differ only in sprint_*
def test_rows_the_table_compares_must_share_their_protocol(tmp_path, monkeypatch, capsys, no_training):
    """RecBole's SASRec (prefix mode) against SASRecSPRINT (full_sequence by its yaml): refused, naming both
    entries, the dataset and the keys, before anything trains; the command line exits with status 2."""
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, models=["SASRec", "SASRecSPRINT"])
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    for part in ("'models[1]' (SASRecSPRINT)", "'models[0]' (SASRec)", "on ml-100k", "(SASRecSPRINT vs SASRec)",
                 "train_mode: 'full_sequence' vs 'unset'",
                 "compare_anyway"):
        assert part in message, message
    assert "sprint_attn_weight:" not in message.split("Compare like with like")[0]  # the SPRINT keys may differ
    assert main([path, "--output_dir", str(tmp_path / "out")]) == 2
    assert "train_mode" in capsys.readouterr().err


@pytest.mark.parametrize("baseline_config, dataset_config, named", [
    ({"learning_rate": 0.01}, {}, "learning_rate: 0.001 vs 0.01"),
    ({"train_mode": "prefix"}, {}, "train_mode: 'full_sequence' vs 'prefix'"),
    ({}, {"ml-100k": {"epochs": 3}}, "vs 3"),  # a dataset_config counts too
])
def test_baseline_of_the_sprint_class_must_differ_only_in_sprint_keys(tmp_path, baseline_config, dataset_config,
                                                                       named):
    baseline = {"name": "SASRecSPRINT", "label": "SASRec", "config": {**OFF, **baseline_config}}
    if dataset_config:
        baseline["dataset_config"] = dataset_config
    with pytest.raises(SpecError, match="differ in more than the SPRINT keys") as error:
        load_spec(write(tmp_path, models=[baseline, "SASRecSPRINT"]))
    assert named in str(error.value)


def test_sprint_keys_and_unrelated_rows_may_differ(tmp_path):
    """Weights and temperature differ: fine. A row the table compares with nothing (another label) may differ
    in anything; so may a -tuned row's weights."""
    tuned = {"name": "SASRecSPRINT", "label": "SASRecSPRINT-tuned",
             "config": {"sprint_attn_weight": 5.0, "sprint_temperature": 2.0, "sprint_power_iters": 2}}
    other = {"name": "SASRecSPRINT", "label": "Prefix", "config": {"train_mode": "prefix"}}
    spec = load_spec(write(tmp_path, models=[*GOOD["models"], tuned, other, "GRU4Rec"]))
    assert [label for label, _ in spec.models] == ["SASRec", "SASRecSPRINT", "SASRecSPRINT-tuned", "Prefix", "GRU4Rec"]


@pytest.mark.parametrize("on", [0, 1])
def test_compare_anyway_lets_meant_differences_through(tmp_path, on):
    """compare_anyway: true (any key) or a list of keys, on either of the two entries; it names no config key,
    so the run ids stay those of the entries without it."""
    models = [{"name": "SASRecSPRINT", "label": "SASRec", "config": {**OFF, "learning_rate": 0.01}}, "SASRecSPRINT"]
    for anyway in (True, ["learning_rate"]):
        entries = [dict(models[0]), {"name": "SASRecSPRINT"}]
        entries[on]["compare_anyway"] = anyway
        spec = load_spec(write(tmp_path, models=entries))
        assert spec.compare_anyway == {spec.models[on][0]: True if anyway is True else {"learning_rate"}}
        without = [c.run_id for c in spec.cells()]
        entries[on].pop("compare_anyway")
        assert without == [c.run_id for c in parse_spec_unchecked(entries, tmp_path).cells()]
    entries = [dict(models[0], config={**OFF, "learning_rate": 0.01, "epochs": 3}), {"name": "SASRecSPRINT"}]
    entries[on]["compare_anyway"] = ["learning_rate"]
    with pytest.raises(SpecError, match=r"epochs: \d+ vs 3.*compare_anyway: \[epochs\]"):
        load_spec(write(tmp_path, models=entries))


@pytest.mark.parametrize("value", ["yes", [], [1], {"train_mode": True}])
def test_compare_anyway_takes_true_false_or_a_list_of_keys(tmp_path, value):
    with pytest.raises(SpecError, match=r"models\[1\]\.compare_anyway"):
        load_spec(write(tmp_path, models=[GOOD["models"][0], {"name": "SASRecSPRINT", "compare_anyway": value}]))


def parse_spec_unchecked(models, tmp_path):
    """The spec of ``models`` loaded with the like-with-like check switched off (for comparing run ids)."""
    from recbole_sprint.benchmark import spec as spec_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spec_module, "_check_like_with_like", lambda *args: None)
        return load_spec(write(tmp_path, models=models))


def test_every_shipped_spec_compares_like_with_like(monkeypatch):
    """Each shipped spec's compared rows are one SPRINT class under one protocol: the baseline is the SPRINT class
    with every weight 0, and no entry needs compare_anyway."""
    from recbole_sprint.benchmark.spec import compared_pairs

    monkeypatch.chdir(REPO)
    names = sorted(f for f in os.listdir(SPECS) if f.endswith(".yaml"))
    assert "smoke.yaml" in names and "paper_main.yaml" in names
    for name in names:
        raw = yaml.safe_load(open(os.path.join(SPECS, name)))
        if name != "smoke.yaml" and not os.path.isdir(os.path.join(REPO, "..", "shared", "datasets")):
            continue
        spec = load_spec(os.path.join(SPECS, name))
        assert not spec.compare_anyway, name
        pairs = compared_pairs(spec)
        assert pairs, name
        for i, label, j, backbone in pairs:
            assert spec.model_classes[label] == spec.model_classes[backbone], (name, label, backbone)
            config = raw["models"][j]["config"]
            assert all(config[f"sprint_{part}_weight"] == 0 for part in ("attn", "ffn", "emb")), (name, backbone)

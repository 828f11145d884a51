"""benchmarks/tuned_spec.py: the spec copy's tuned entry, its run ids, and its errors."""

import json
import os

import pytest
import yaml

from recbole_sprint.benchmark.spec import load_spec

from .scripts import load_benchmark_script


SPEC = {
    "name": "t",
    "models": ["HSTU", {"name": "HSTUSPRINT", "config": {"sprint_attn_weight": 2.5, "sprint_emb_weight": 0.1,
                                                          "sprint_temperature": 4.0}}],
    "datasets": ["ml-100k"],
    "seeds": [1, 2],
    "config": {"epochs": 1},
}


def write_search(folder, best, param_names=("sprint_attn_weight", "sprint_emb_weight"), spec_model="HSTUSPRINT",
                 dataset="ml-100k"):
    os.makedirs(folder)
    with open(os.path.join(folder, "search_settings.json"), "w") as f:
        json.dump({"model": "HSTUSPRINT", "spec_model": spec_model, "dataset": dataset,
                   "param_names": list(param_names)}, f)
    if best is not None:
        with open(os.path.join(folder, "best_trial.json"), "w") as f:
            json.dump({"trial_id": "trial_00003", "best_valid_score": 0.02, **best}, f)


def test_tuned_entry_takes_the_best_values_and_gets_the_run_ids_of_the_same_entry_written_by_hand(tmp_path):
    spec_path, out = tmp_path / "spec.yaml", tmp_path / "out.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    write_search(str(tmp_path / "search"), {"sprint_attn_weight": 0.1, "sprint_emb_weight": 0.0})
    assert load_benchmark_script("tuned_spec").main(["--spec", str(spec_path), "--tune_dir", str(tmp_path / "search"),
                               "--out", str(out)]) == 0

    written = yaml.safe_load(out.read_text())
    assert written["models"][:2] == SPEC["models"]  # the spec's own entries untouched
    # the searched values replace the entry's, the rest of its config (tau) stays
    assert written["models"][2] == {"name": "HSTUSPRINT", "label": "HSTUSPRINT-tuned",
                                    "config": {"sprint_attn_weight": 0.1, "sprint_emb_weight": 0.0,
                                               "sprint_temperature": 4.0}}
    by_hand = dict(SPEC, models=SPEC["models"] + [
        {"name": "HSTUSPRINT", "label": "HSTUSPRINT-tuned",
         "config": {"sprint_attn_weight": 0.1, "sprint_emb_weight": 0.0, "sprint_temperature": 4.0}}])
    (tmp_path / "by_hand.yaml").write_text(yaml.safe_dump(by_hand))
    ids = [{c.run_id for c in load_spec(str(p)).cells() if c.model == "HSTUSPRINT-tuned"}
           for p in (out, tmp_path / "by_hand.yaml")]
    assert len(ids[0]) == 2 and ids[0] == ids[1]  # two seeds, the stored results stay valid


@pytest.mark.parametrize("best, spec_model, message", [
    (None, "HSTUSPRINT", "no best_trial.json"),  # the search has no finished trial
    ({"sprint_attn_weight": 1.0, "sprint_emb_weight": 0.0}, "SASRecSPRINT", "no single model entry labelled SASRecSPRINT"),
])
def test_bad_searches_raise_a_clear_error(tmp_path, best, spec_model, message):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    write_search(str(tmp_path / "search"), best, spec_model=spec_model)
    with pytest.raises(SystemExit, match=message):
        load_benchmark_script("tuned_spec").main(["--spec", str(spec_path), "--tune_dir", str(tmp_path / "search"),
                            "--out", str(tmp_path / "out.yaml")])


def run_ids(path, label):
    return {(c.dataset, c.seed): c.run_id for c in load_spec(str(path)).cells() if c.model == label}


def test_a_search_on_another_dataset_goes_into_the_tuned_entrys_dataset_config(tmp_path):
    tuned = {"name": "HSTUSPRINT", "label": "HSTUSPRINT-tuned", "config": {"sprint_attn_weight": 5.0}}
    spec_path, out = tmp_path / "spec.yaml", tmp_path / "out.yaml"
    spec_path.write_text(yaml.safe_dump(dict(SPEC, datasets=["ml-100k", "ml-1m"], models=SPEC["models"] + [tuned])))
    write_search(str(tmp_path / "search"), {"sprint_attn_weight": 1.0, "sprint_emb_weight": 0.0}, dataset="ml-1m")
    assert load_benchmark_script("tuned_spec").main(["--spec", str(spec_path), "--tune_dir", str(tmp_path / "search"),
                               "--out", str(out)]) == 0

    entry = yaml.safe_load(out.read_text())["models"][2]
    assert entry == {**tuned, "dataset_config": {"ml-1m": {"sprint_attn_weight": 1.0, "sprint_emb_weight": 0.0}}}
    before, after = run_ids(spec_path, "HSTUSPRINT-tuned"), run_ids(out, "HSTUSPRINT-tuned")
    assert len(after) == 4
    for (dataset, seed), run_id in after.items():  # ml-100k's stored runs still count; ml-1m's are new
        assert (run_id == before[(dataset, seed)]) == (dataset == "ml-100k")
    cell = next(c for c in load_spec(str(out)).cells() if c.model == "HSTUSPRINT-tuned" and c.dataset == "ml-1m")
    assert cell.config["sprint_attn_weight"] == 1.0 and cell.config["sprint_emb_weight"] == 0.0


def test_values_the_tuned_entry_already_holds_change_nothing(tmp_path):
    tuned = {"name": "HSTUSPRINT", "label": "HSTUSPRINT-tuned",
             "config": {"sprint_attn_weight": 1.0, "sprint_emb_weight": 0.0}}
    spec_path, out = tmp_path / "spec.yaml", tmp_path / "out.yaml"
    spec_path.write_text(yaml.safe_dump(dict(SPEC, models=SPEC["models"] + [tuned])))
    write_search(str(tmp_path / "search"), {"sprint_attn_weight": 1.0, "sprint_emb_weight": 0.0})
    assert load_benchmark_script("tuned_spec").main(["--spec", str(spec_path), "--tune_dir", str(tmp_path / "search"),
                               "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["models"][2] == tuned
    assert run_ids(out, "HSTUSPRINT-tuned") == run_ids(spec_path, "HSTUSPRINT-tuned")
    # values of an earlier search on this dataset give way to the config that now holds the best ones
    stale = {**tuned, "dataset_config": {"ml-100k": {"sprint_attn_weight": 5.0}}}
    spec_path.write_text(yaml.safe_dump(dict(SPEC, models=SPEC["models"] + [stale])))
    assert load_benchmark_script("tuned_spec").main(["--spec", str(spec_path), "--tune_dir", str(tmp_path / "search"),
                                                     "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["models"][2] == tuned

"""--spec: a search under a benchmark spec's protocol (fixed config = the spec's run of one model entry)."""

import os

import pytest
import yaml

from recbole_sprint.tune import common

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPRINT_HYPER = os.path.join(REPO, "properties", "hyper", "sprint.hyper")

SPEC = {
    "name": "tiny_protocol",
    "models": ["SASRec", {"name": "SASRecSPRINT", "label": "Backbone",
                          "config": {"sprint_attn_weight": 0.0, "sprint_ffn_weight": 0.0, "sprint_emb_weight": 0.0}}],
    "datasets": [{"name": "ml-100k", "config": {"MAX_ITEM_LIST_LENGTH": 10}}],
    "seeds": [7, 8],
    "config": {"epochs": 3, "train_neg_sample_args": None, "n_layers": 1, "hidden_size": 16, "inner_size": 32, "train_batch_size": 256,
               "valid_metric": "NDCG@10", "metrics": ["NDCG", "Hit"], "topk": [10], "state": "ERROR"},
}


def write_spec(tmp_path, **changes):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return str(path)


def settings_for(argv):
    args, extra = common.build_parser().parse_known_args(argv)
    return common.prepare_settings(args, common.parse_overrides(extra))


def test_fixed_config_is_the_spec_run_of_the_entry_with_cli_overrides_on_top(tmp_path):
    spec = write_spec(tmp_path)
    settings = settings_for([f"--spec={spec}", "--model=Backbone", "--dataset=ml-100k", f"--params_file={SPRINT_HYPER}",
                             "--backend=local", f"--output_dir={tmp_path / 'out'}", "--train_batch_size=128"])
    fixed = settings["fixed"]
    assert settings["model"] == "SASRecSPRINT" and settings["spec_model"] == "Backbone"  # the entry's class
    assert fixed["model"] == "SASRecSPRINT" and fixed["dataset"] == "ml-100k"
    assert fixed["epochs"] == 3 and settings["epochs"] == 3  # the spec's protocol
    assert fixed["MAX_ITEM_LIST_LENGTH"] == 10  # the spec's dataset config
    assert fixed["sprint_ffn_weight"] == 0.0  # the entry's config (searched values override it per trial)
    assert fixed["seed"] == 7  # the first seed
    assert fixed["train_batch_size"] == 128  # --key=value beats the spec
    assert settings["spec"] == spec


def test_the_drivers_own_flags_on_the_command_line_do_not_reach_the_specs_configs(tmp_path, monkeypatch):
    """``python -m recbole_sprint.tune --backend=local --spec=...``: the spec's checks build RecBole Configs, which
    read ``sys.argv``; the driver's flags (--backend, --workers, ...) are not config keys and must not reach them
    (on the GPU, the fifteenth session's first search failed so: "unknown config key [backend]")."""
    spec = write_spec(tmp_path)
    argv = [f"--spec={spec}", "--model=Backbone", "--dataset=ml-100k", f"--params_file={SPRINT_HYPER}",
            "--backend=local", "--workers=2", f"--output_dir={tmp_path / 'out'}"]
    monkeypatch.setattr("sys.argv", ["recbole_sprint.tune", *argv])
    settings = settings_for(argv)
    assert settings["fixed"]["epochs"] == 3 and settings["spec_model"] == "Backbone"


def test_unknown_entry_or_dataset_names_the_choices(tmp_path):
    spec = write_spec(tmp_path)
    base = [f"--spec={spec}", f"--params_file={SPRINT_HYPER}", "--backend=local"]
    with pytest.raises(common.SearchError, match=r"--model=SASRecSPRINT: .*choose from SASRec, Backbone"):
        settings_for(base + ["--model=SASRecSPRINT", "--dataset=ml-100k"])  # a class name, not an entry label
    with pytest.raises(common.SearchError, match=r"--dataset=ml-1m: not in spec tiny_protocol; choose from ml-100k"):
        settings_for(base + ["--model=Backbone", "--dataset=ml-1m"])
    with pytest.raises(common.SearchError, match="--spec: no such file"):
        settings_for([f"--spec={tmp_path / 'missing.yaml'}", "--model=Backbone", "--dataset=ml-100k",
                      f"--params_file={SPRINT_HYPER}"])


def test_a_spec_with_several_runs_per_seed_is_refused(tmp_path):
    spec = write_spec(tmp_path, sweep={"hidden_size": [16, 32]})
    with pytest.raises(common.SearchError, match="has 2 runs of Backbone on ml-100k per seed"):
        settings_for([f"--spec={spec}", "--model=Backbone", "--dataset=ml-100k", f"--params_file={SPRINT_HYPER}"])

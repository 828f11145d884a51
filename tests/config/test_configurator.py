"""Plugin Config: model lookup by name and yaml defaults along the model's MRO."""

import pytest

from recbole_sprint.config import Config


def test_plugin_model_gets_backbone_and_sprint_defaults():
    config = Config(model="SASRecSPRINT", dataset="ml-100k")
    assert config["model"] == "SASRecSPRINT"
    assert config["n_layers"] == 2 and config["hidden_size"] == 64  # RecBole's SASRec.yaml
    assert config["sprint_attn_weight"] == 2.5 and config["sprint_ffn_weight"] == 0.01  # SPRINT.yaml
    assert config["sprint_temperature"] == 4.0 and config["sprint_power_iters"] == 1
    assert config["train_neg_sample_args"]["distribution"] == "none"  # SASRecSPRINT.yaml: CE, no negatives
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}  # RecBole's sequential quick-start yaml


def test_external_config_wins_over_yaml_defaults():
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict={"sprint_attn_weight": 7.5, "n_layers": 4})
    assert config["sprint_attn_weight"] == 7.5 and config["n_layers"] == 4


def test_model_name_from_config_dict_resolves_plugin_models():
    config = Config(config_dict={"model": "SASRecSPRINT", "dataset": "ml-100k"})
    assert config["model"] == "SASRecSPRINT" and config["sprint_emb_weight"] == 0.1


def test_recbole_models_are_unchanged():
    config = Config(model="SASRec", dataset="ml-100k", config_dict={"train_neg_sample_args": None})
    assert config["model"] == "SASRec" and config["hidden_dropout_prob"] == 0.5
    assert "sprint_attn_weight" not in config.final_config_dict


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match=r"model \[SASRecSprint\] is neither a recbole_sprint model \(.*SASRecSPRINT"):
        Config(model="SASRecSprint", dataset="ml-100k")

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


def _recbole_sequential_models():
    import inspect

    import recbole.model.sequential_recommender as sequential
    from recbole.model.abstract_recommender import SequentialRecommender

    return sorted(name for name, cls in vars(sequential).items()
                  if inspect.isclass(cls) and issubclass(cls, SequentialRecommender) and cls is not SequentialRecommender)


@pytest.mark.parametrize("model", _recbole_sequential_models())
def test_every_recbole_sequential_model_builds_its_default_config(model):
    """RecBole's overall.yaml samples a negative for every model and its Config rejects that with CE: the
    plugin's Config drops the sampling for CE models (SASRec, BERT4Rec, GRU4Rec, ...), and only for them."""
    config = Config(model=model, dataset="ml-100k")
    distribution = config["train_neg_sample_args"]["distribution"]
    reads_loss = not hasattr(config.model_class, "input_type")  # RecBole's own condition (configurator.py:340)
    if reads_loss and config.final_config_dict.get("loss_type") == "CE":
        assert distribution == "none"
    else:  # BPR models, and those with their own input type, keep RecBole's uniform negatives
        assert distribution == "uniform"


def test_ce_default_keeps_explicit_choices():
    bpr = Config(model="SASRec", dataset="ml-100k", config_dict={"loss_type": "BPR"})
    assert bpr["train_neg_sample_args"]["distribution"] == "uniform"  # BPR needs its negative
    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):  # an explicit contradiction
        Config(model="SASRec", dataset="ml-100k",
               config_dict={"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}})

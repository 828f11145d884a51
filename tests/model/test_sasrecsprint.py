"""SASRecSPRINT end to end on ml-100k with tiny configs (CPU, seconds)."""

import glob
import os

import pytest
import torch

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.quick_start import load_data_and_model, run_recbole_sprint
from recbole_sprint.utils import get_model, get_trainer

SPRINT_OFF = {"sprint_attn_weight": 0.0, "sprint_ffn_weight": 0.0, "sprint_emb_weight": 0.0}


def test_weights_zero_trains_exactly_like_sasrec(tiny):
    """RecBole's protocol (train_mode prefix; SASRecSPRINT.yaml's default is full_sequence): bit-identical."""
    baseline = run_recbole_sprint("SASRec", "ml-100k", config_dict=tiny(train_mode="prefix"), saved=False)
    sprint_off = run_recbole_sprint(
        "SASRecSPRINT", "ml-100k", config_dict=tiny(train_mode="prefix", **SPRINT_OFF), saved=False
    )
    assert sprint_off["test_result"] == baseline["test_result"]
    assert sprint_off["best_valid_result"] == baseline["best_valid_result"]
    # ...and SPRINT on does change training (so the comparison above can fail)
    sprint_on = run_recbole_sprint("SASRecSPRINT", "ml-100k", config_dict=tiny(train_mode="prefix"), saved=False)
    assert sprint_on["test_result"] != baseline["test_result"]


def _build(config_dict):
    """RecBole's prefix protocol (many steps an epoch) unless ``config_dict`` sets train_mode."""
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict={"train_mode": "prefix", **config_dict})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(config["seed"])
    model = get_model("SASRecSPRINT")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return model, trainer, train_data


def _spectral_norms(model):
    layer = model.trm_encoder.layer[0]
    return [
        torch.linalg.matrix_norm(weight.detach(), 2).item()
        for weight in (layer.feed_forward.dense_1.weight, layer.feed_forward.dense_2.weight, model.item_embedding.weight)
    ]


def test_sprint_shrinks_spectral_norms(tiny):
    norms = {}
    for name, weights in {"off": SPRINT_OFF, "on": {"sprint_ffn_weight": 1.0, "sprint_emb_weight": 1.0}}.items():
        model, trainer, train_data = _build(tiny(learning_rate=0.01, **weights))
        trainer._train_epoch(train_data, epoch_idx=0)
        norms[name] = _spectral_norms(model)
    for off, on in zip(norms["off"], norms["on"]):  # W_1, W_2, E
        assert on < off


def test_power_iteration_buffers_are_in_the_state_dict(tiny):
    model, trainer, train_data = _build(tiny())
    keys = [key for key in model.state_dict() if key.startswith("sprint.")]
    assert "sprint.value.v" in keys and "sprint.ffn_in.u" in keys and "sprint.embedding.u" in keys
    assert model.sprint.value.v.shape == (1 * 2, 16)  # layers x heads start vectors of W_V,h (d = 16)
    before = model.sprint.ffn_in.v.clone()
    trainer._train_epoch(train_data, epoch_idx=0)
    assert not torch.equal(model.sprint.ffn_in.v, before)  # warm start state advanced in training
    fresh, _, _ = _build(tiny())
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh.sprint.ffn_in.v, model.sprint.ffn_in.v)


def test_train_reload_best_checkpoint_and_test(tiny, tmp_path):
    """torch >= 2.6 loads with weights_only=True by default; RecBole's checkpoints need the compat shim."""
    assert int(torch.__version__.split(".")[0]) >= 2
    result = run_recbole_sprint("SASRecSPRINT", "ml-100k", config_dict=tiny(epochs=2), saved=True)
    (checkpoint,) = glob.glob(os.path.join(str(tmp_path), "saved", "SASRecSPRINT-*.pth"))
    assert result["test_result"]["ndcg@10"] > 0

    # the same checkpoint rebuilds the model and gives the same test metrics
    config, model, _, train_data, _, test_data = load_data_and_model(checkpoint)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)
    assert trainer.evaluate(test_data, load_best_model=False) == result["test_result"]

    # and resuming from it works too
    trainer.resume_checkpoint(checkpoint)
    assert trainer.start_epoch >= 1


def test_rejected_config_value_names_the_key(tiny):
    with pytest.raises(ValueError, match="sprint_temperature must be a number > 0"):
        _build(tiny(sprint_temperature=0))

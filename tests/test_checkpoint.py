"""Checkpoints load with ``torch.load(weights_only=True)``; a pickled one only with an explicit opt-in
(recbole_sprint.checkpoint, compat shim 1)."""


import pytest
import torch
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_sprint.checkpoint import UntrustedCheckpointError, config_from_plain, config_to_plain
from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.quick_start import load_data_and_model
from recbole_sprint.utils import get_model, get_trainer
from tests.tiny_data import tiny_data_config, write_inter


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: what a malicious checkpoint would do (with os.system, ...)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def _trainer(tmp_path, monkeypatch, model="SASRecSPRINT"):
    monkeypatch.chdir(tmp_path)
    write_inter(tmp_path, "tiny")
    config = Config(model=model, dataset="tiny", config_dict=tiny_data_config(tmp_path, train_mode="prefix"))
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, train_data._dataset)
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model), test_data


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "MARKER"
    path = str(tmp_path / "crafted.pth")
    torch.save({"config": _Payload(str(marker)), "state_dict": {}, "epoch": 0}, path)
    assert not marker.exists()
    return path, marker


def test_crafted_checkpoint_runs_no_code_and_is_a_clear_error(crafted, tmp_path, monkeypatch):
    path, marker = crafted
    with pytest.raises(UntrustedCheckpointError, match="pickled Python objects.*trust_pickle=True"):
        load_data_and_model(path)
    trainer, test_data = _trainer(tmp_path, monkeypatch)
    with pytest.raises(UntrustedCheckpointError):
        trainer.evaluate(test_data, load_best_model=True, model_file=path)
    with pytest.raises(UntrustedCheckpointError):
        trainer.resume_checkpoint(path)
    assert not marker.exists()


def test_plugin_checkpoint_round_trips_under_weights_only(tmp_path, monkeypatch):
    trainer, test_data = _trainer(tmp_path, monkeypatch)
    trainer._save_checkpoint(0, verbose=False)
    saved = torch.load(trainer.saved_model_file, weights_only=True)  # no pickled objects in it
    assert saved["recbole_sprint_checkpoint"] == 1 and saved["epoch"] == 0
    rebuilt = config_from_plain(saved["config"])
    assert rebuilt.final_config_dict == trainer.config.final_config_dict  # enums and the device included
    assert rebuilt.parameters == trainer.config.parameters and str(rebuilt) == str(trainer.config)

    config, model, _, _, _, _ = load_data_and_model(trainer.saved_model_file)
    assert config["model"] == "SASRecSPRINT" and type(config) is type(trainer.config)
    state = trainer.model.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    assert trainer.evaluate(test_data, load_best_model=True)  # the best-checkpoint reload reads it too
    trainer.resume_checkpoint(trainer.saved_model_file)
    assert trainer.start_epoch == 1


def test_legacy_recbole_checkpoint_loads_only_with_the_opt_in(tmp_path, monkeypatch):
    trainer, test_data = _trainer(tmp_path, monkeypatch)
    Trainer._save_checkpoint(trainer, 0, verbose=False)  # RecBole's own writer: {"config": Config, ...} pickled
    path = trainer.saved_model_file
    with pytest.raises(UntrustedCheckpointError, match="trust_pickle=True"):
        load_data_and_model(path)
    with pytest.raises(UntrustedCheckpointError):
        trainer.evaluate(test_data, load_best_model=True)

    config, model, _, _, _, _ = load_data_and_model(path, trust_pickle=True)
    assert config["model"] == "SASRecSPRINT"
    state = trainer.model.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    trainer.trust_pickle = True  # the trainer's opt-in, for evaluate(load_best_model=True)
    assert trainer.evaluate(test_data, load_best_model=True)
    trainer.resume_checkpoint(path, trust_pickle=True)
    assert trainer.start_epoch == 1


def test_config_to_plain_is_json_data(tmp_path, monkeypatch):
    import json

    trainer, _ = _trainer(tmp_path, monkeypatch)
    plain = config_to_plain(trainer.config)
    assert json.loads(json.dumps(plain)) == plain

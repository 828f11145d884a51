"""Helpers for the model tests: tiny end-to-end runs through RecBole's own Trainer and the main job."""

import glob
import importlib.util
import os

import yaml
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.utils import get_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# ml-100k restricted to its 449 users with <= 60 ratings (15.6k interactions instead of 100k): the same data
# format and code paths, a fraction of the training time on CI's 2 cores.
SMALL_ML100K = {"user_inter_num_interval": "[0,60]"}
SPRINT_OFF = {"sprint_attn_weight": 0.0, "sprint_ffn_weight": 0.0, "sprint_emb_weight": 0.0}


def run_with_recbole_trainer(model_name, config_dict, dataset="ml-100k"):
    """Train and test with ``recbole.trainer.Trainer`` itself (no plugin trainer); returns the test result."""
    config = Config(model=model_name, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset)
    trainer = Trainer(config, model)
    assert type(trainer) is Trainer
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    return trainer.evaluate(test_data, load_best_model=False, show_progress=False)


def run_main_job(model_name, config_dict, tmp_path, dataset="ml-100k"):
    """``run_recbole_sprint.py``'s ``main([...])`` with the config written to a yaml file; returns
    ``(exit code, saved checkpoints)`` (the job trains, saves the best model, reloads it and tests)."""
    spec = importlib.util.spec_from_file_location("run_recbole_sprint", os.path.join(REPO, "run_recbole_sprint.py"))
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    config_file = os.path.join(str(tmp_path), f"{model_name}.yaml")
    with open(config_file, "w") as handle:
        yaml.safe_dump(config_dict, handle)
    code = job.main([f"--model={model_name}", f"--dataset={dataset}", f"--config_files={config_file}"])
    return code, glob.glob(os.path.join(config_dict["checkpoint_dir"], f"{model_name}-*.pth"))


def assert_valid_metrics(result):
    assert set(result) == {"recall@10", "ndcg@10"}
    assert 0 < result["ndcg@10"] <= result["recall@10"] <= 1

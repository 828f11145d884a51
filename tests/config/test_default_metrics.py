"""The plugin's models evaluate the popularity-bias metrics by default; RecBole's models keep RecBole's own
defaults (issue 23)."""

import pytest

from recbole_sprint.config import Config

LONG_TAIL = ["TailExposure", "ARP", "TailCoverage", "TailRecall", "HistoryShare"]
RECBOLE = ["Recall", "MRR", "NDCG", "Hit", "Precision"]


@pytest.mark.parametrize("model", ["SASRecSPRINT", "BERT4RecSPRINT", "HSTU", "HSTUSPRINT", "SASRecPP",
                                   "SASRecPPSPRINT"])
def test_plugin_models_report_the_long_tail_metrics(model):
    config = Config(model=model, dataset="ml-100k", config_dict={"normalize_all": False})
    assert config["metrics"] == RECBOLE + LONG_TAIL
    assert config["eval_args"]["mode"] == {"valid": "full", "test": "full"}  # what HistoryShare needs


@pytest.mark.parametrize("model, metrics", [("SASRec", RECBOLE), ("Pop", RECBOLE), ("GRU4Rec", RECBOLE),
                                            ("FM", ["AUC", "LogLoss"])])
def test_recbole_models_keep_recbole_defaults(model, metrics):
    assert Config(model=model, dataset="ml-100k")["metrics"] == metrics


def test_a_metrics_override_still_wins():
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict={"metrics": ["NDCG"], "valid_metric": "NDCG@10"})
    assert config["metrics"] == ["NDCG"]

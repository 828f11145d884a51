"""The metrics inside RecBole's trainer and evaluator: tiny runs, real-data popularity counts, score factors,
configuration defaults and errors."""

import math

import pytest
import torch
from recbole.evaluator import Evaluator

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.evaluator import SprintCollector, score_factors
from recbole_sprint.quick_start import run_recbole_sprint
from recbole_sprint.utils import get_model

NEW_METRICS = ["ARP", "TailCoverage", "TailRecall", "TailExposure", "SpectralCollapse", "InformationAbundance"]
RECBOLE_POPULARITY_METRICS = ["AveragePopularity", "TailPercentage", "GiniIndex", "ItemCoverage"]
# ml-100k users with at most 30 ratings (a few thousand interactions): a run takes seconds
SMALL = {"user_inter_num_interval": "[0,30]"}


@pytest.mark.parametrize("model", ["SASRec", "SASRecSPRINT", "SASRecPPSPRINT"])  # SASRec++: its own score_factors
def test_tiny_run_reports_the_new_metrics_in_the_test_result(tiny, model):
    config = tiny(
        metrics=["Recall", "NDCG"] + NEW_METRICS + RECBOLE_POPULARITY_METRICS,
        topk=[5, 10],
        eval_batch_size=64,  # several evaluation batches: exercises the collector's row offsets
        **SMALL,
    )
    result = run_recbole_sprint(model, "ml-100k", config_dict=config, saved=False)["test_result"]
    for k in (5, 10):
        for name in ["arp", "tailcoverage", "tailexposure", "tailrecall", "averagepopularity", "giniindex"]:
            assert f"{name}@{k}" in result
        assert 0 <= result[f"tailcoverage@{k}"] <= 1 and 0 <= result[f"tailexposure@{k}"] <= 1
        assert math.isnan(result[f"tailrecall@{k}"]) or 0 <= result[f"tailrecall@{k}"] <= 1
        # ARP also counts each user's first item, which RecBole's AveragePopularity misses: never smaller
        assert result[f"arp@{k}"] >= result[f"averagepopularity@{k}"] > 0
    assert result["tailexposure@5"] <= 1 and result["tailcoverage@5"] <= result["tailcoverage@10"]
    assert 1 / 16 <= result["spectralcollapse"] <= 1  # sigma_1^2 / sum sigma^2 of a rank <= 16 matrix
    assert 1 <= result["informationabundance"] <= 16  # hidden_size 16


def test_popularity_counts_and_score_factors_on_real_data(tiny):
    config = Config("SASRec", "ml-100k", config_dict=tiny(**SMALL))
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    train, full = train_data._dataset, dataset

    # popularity_source: all == train + the valid and test targets, and covers every interaction once
    collector = SprintCollector(Config("SASRec", "ml-100k", config_dict=tiny(metrics=["ARP"], valid_metric="ARP@10",
                                                                             popularity_source="all", **SMALL)))
    collector.data_collect(train_data)
    every = collector.data_struct.get("data.item_popularity")
    from recbole_sprint.evaluator.popularity import item_interaction_counts

    on_train = item_interaction_counts(train)
    num_items = full.item_num
    held_out = sum(torch.bincount(d._dataset.inter_feat["item_id"], minlength=num_items) for d in (valid_data, test_data))
    assert torch.equal(every, on_train + held_out)
    n_users = full.user_num - 1  # without padding
    assert every.sum().item() == len(full.inter_feat) + n_users  # one prefix row per interaction but the first
    assert every[0] == 0 and on_train[0] == 0

    # score factors reproduce full_sort_predict for RecBole's SASRec and BERT4Rec and for SASRecSPRINT
    interaction = next(iter(test_data))[0]
    for name in ["SASRec", "BERT4Rec", "SASRecSPRINT"]:
        model_config = Config(name, "ml-100k", config_dict=tiny(**SMALL))
        torch.manual_seed(0)
        model = get_model(name)(model_config, train).eval()
        with torch.no_grad():
            users, items, bias = score_factors(model, interaction)
            expected = model.full_sort_predict(interaction)
            rebuilt = users @ items.T + (0 if bias is None else bias)
        assert rebuilt.shape == expected.shape == (len(interaction), num_items)
        assert torch.allclose(rebuilt, expected, atol=1e-5), name
        assert (bias is not None) == (name == "BERT4Rec")


def test_plugin_defaults_reach_every_model_and_user_values_win(tiny):
    for model in ["SASRec", "SASRecSPRINT", "BPR"]:
        config = Config(model, "ml-100k", config_dict=tiny())
        assert (config["tail_ratio"], config["popularity_source"]) == (0.8, "train")
    config = Config("SASRec", "ml-100k", config_dict=tiny(tail_ratio=0.95, popularity_source="all"))
    assert (config["tail_ratio"], config["popularity_source"]) == (0.95, "all")
    # a smaller-is-better plugin metric as valid_metric flips RecBole's early-stopping direction
    assert Config("SASRec", "ml-100k", config_dict=tiny(metrics=["ARP"], valid_metric="ARP@10"))["valid_metric_bigger"] is False


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tail_ratio": 1.0}, r"tail_ratio must be a number in the open interval \(0, 1\).*got 1.0"),
        ({"tail_ratio": 0}, r"tail_ratio must be a number in the open interval \(0, 1\).*got 0"),
        ({"popularity_source": "test"}, "popularity_source must be one of train, all.*got 'test'"),
    ],
)
def test_bad_configuration_fails_when_the_evaluator_is_built(tiny, overrides, message):
    with pytest.raises(ValueError, match=message):  # tail_ratio: already by the Config (recbole_sprint.config.checks)
        config = Config("SASRec", "ml-100k", config_dict=tiny(metrics=["Recall", "TailExposure"],
                                                              valid_metric="Recall@10", **overrides))
        Evaluator(config)  # built by the trainer's constructor, before any training


def test_recbole_tailpercentage_keeps_its_count_threshold_mode(tiny):
    """tail_ratio > 1 is RecBole's count threshold for TailPercentage; only the plugin's metrics reject it."""
    config = Config("SASRec", "ml-100k", config_dict=tiny(metrics=["TailPercentage"], valid_metric="TailPercentage@10",
                                                          tail_ratio=20))
    Evaluator(config)

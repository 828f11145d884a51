"""SprintCollector and the popularity counts, on hand-made data (no dataset, no training)."""

from collections import Counter

import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_sprint.evaluator import SprintCollector, register_metric, score_factors
from recbole_sprint.evaluator.popularity import (
    attach_full_popularity,
    item_interaction_counts,
    item_popularity,
)


class FakeDataset:
    """The attributes of a RecBole (Sequential)Dataset that the popularity counts read."""

    iid_field = "item_id"

    def __init__(self, inter_feat, num_items, sequential):
        self.inter_feat = Interaction(inter_feat)
        self.num_items = num_items
        if sequential:
            self.item_id_list_field = "item_id_list"
            self.item_list_length_field = "item_length"
        self.item_counter = Counter(self.inter_feat["item_id"].tolist())

    def num(self, field):
        assert field == "item_id"
        return self.num_items


def sequential_dataset():
    # user a: 1 2 3 4 (three prefixes), user b: 2 5 (one prefix): every interaction once = 1:1 2:2 3:1 4:1 5:1
    return FakeDataset(
        {
            "item_id": torch.tensor([2, 3, 4, 5]),
            "item_id_list": torch.tensor([[1, 0, 0], [1, 2, 0], [1, 2, 3], [2, 0, 0]]),
            "item_length": torch.tensor([1, 2, 3, 1]),
        },
        num_items=7,
        sequential=True,
    )


def test_sequential_counts_include_each_users_first_item():
    counts = item_interaction_counts(sequential_dataset())
    assert counts.tolist() == [0, 1, 2, 1, 1, 1, 0]


def test_plain_counts_are_one_per_row_and_padding_is_zero():
    dataset = FakeDataset({"item_id": torch.tensor([0, 3, 3, 1])}, num_items=5, sequential=False)
    assert item_interaction_counts(dataset).tolist() == [0, 1, 0, 2, 0]


def test_popularity_source_all_reads_the_attached_counts_and_fails_clearly_without():
    train = sequential_dataset()
    with pytest.raises(ValueError, match="popularity_source: all needs.*recbole_sprint.data.data_preparation"):
        item_popularity(train, "all")
    full = FakeDataset({"item_id": torch.tensor([6, 6, 1])}, num_items=7, sequential=False)
    attach_full_popularity(train, full)
    assert item_popularity(train, "all").tolist() == [0, 1, 0, 0, 0, 0, 2]
    assert item_popularity(train, "train").tolist() == [0, 1, 2, 1, 1, 1, 0]


class FakeLoader:
    def __init__(self, dataset):
        self._dataset = dataset
        self.dataset = dataset  # RecBole's collector reads train_data.dataset


def collector(metrics, **overrides):
    config = {
        "metrics": metrics,
        "topk": [2],
        "eval_args": {"mode": {"valid": "full", "test": "full"}},
        "device": torch.device("cpu"),
        "popularity_source": "train",
        "tail_ratio": 0.8,
        "ITEM_ID_FIELD": "item_id",
    }
    config.update(overrides)
    return SprintCollector(config)


def test_collector_gathers_popularity_and_positives_with_row_offsets_then_resets():
    c = collector(["TailRecall", "ItemCoverage", "AveragePopularity"])
    c.data_collect(FakeLoader(sequential_dataset()))
    for _ in range(2):  # two evaluations: the row offset restarts at 0 each time
        batches = [
            (torch.tensor([[0.0, 1, 2, 3, 4, 5, 6], [0, 6, 5, 4, 3, 2, 1]]), torch.tensor([0, 1]), torch.tensor([6, 2])),
            (torch.tensor([[0.0, 0, 0, 9, 8, 0, 0]]), torch.tensor([0, 0]), torch.tensor([4, 3])),
        ]
        for scores, positive_u, positive_i in batches:
            c.eval_batch_collect(scores, Interaction({"user_id": torch.arange(scores.shape[0])}), positive_u, positive_i)
        c.model_collect(torch.nn.Linear(1, 1))
        struct = c.get_data_struct()
        assert struct.get("rec.positives").tolist() == [[0, 6], [1, 2], [2, 4], [2, 3]]
        assert struct.get("rec.items").tolist() == [[6, 5], [1, 2], [3, 4]]
        assert struct.get("data.item_popularity").tolist() == [0, 1, 2, 1, 1, 1, 0]
        assert struct.get("data.num_items") == 7  # RecBole's own needs survive (compat fix)
        assert struct.get("data.count_items") == Counter({2: 1, 3: 1, 4: 1, 5: 1})
        assert all(v.device.type == "cpu" for v in struct._data_dict.values() if isinstance(v, torch.Tensor))
    assert "rec.positives" not in c.data_struct and "data.item_popularity" in c.data_struct


def test_collector_rejects_an_unknown_popularity_source_at_construction():
    with pytest.raises(ValueError, match="popularity_source must be one of train, all"):
        collector(["ARP"], popularity_source="everything")
    collector(["Recall"], popularity_source="everything")  # not read unless a metric needs popularity


class DotModel(torch.nn.Module):
    """scores = X E^T + b with X = the user's row of a table (a stand-in for a sequential model)."""

    def __init__(self, bias=True, wrong=False):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.user_table = torch.nn.Parameter(torch.randn(5, 3, generator=generator))
        self.items = torch.nn.Parameter(torch.randn(6, 3, generator=generator))
        self.bias = torch.nn.Parameter(torch.randn(6, generator=generator)) if bias else None
        self.wrong = wrong

    def full_sort_predict(self, interaction):
        scores = self.user_table[interaction["user_id"]] @ self.items.T
        return scores if self.bias is None else scores + self.bias

    def score_factors(self, interaction):
        users = self.user_table[interaction["user_id"]] * (2.0 if self.wrong else 1.0)
        return (users, self.items) if self.bias is None else (users, self.items, self.bias)


def evaluate_factors(model, metrics=("SpectralCollapse",)):
    """Two batches through the collector as the plugin's trainers score them: by the score factors when the
    collector needs the user states (which it then gets), else by ``full_sort_predict``."""
    c = collector(list(metrics))
    with torch.no_grad():
        for users in [torch.tensor([0, 1, 2]), torch.tensor([3, 4])]:
            interaction = Interaction({"user_id": users})
            if c.needs_user_factors:
                states, items, bias = score_factors(model, interaction)
                scores = states @ items.T + (0 if bias is None else bias)
                c.user_factors_collect(states)
            else:
                scores = model.full_sort_predict(interaction)
            scores[:, 0] = -float("inf")  # as RecBole's trainer does
            c.eval_batch_collect(scores, interaction, torch.arange(len(users)), torch.ones(len(users), dtype=torch.long))
        c.model_collect(model)
    return c.get_data_struct()


@pytest.mark.parametrize("bias", [True, False])
def test_collector_gathers_user_and_item_factors_of_every_batch(bias):
    model = DotModel(bias=bias)
    struct = evaluate_factors(model)
    assert torch.equal(struct.get("rec.user_factors"), model.user_table.detach())
    assert torch.equal(struct.get("model.item_factors"), model.items.detach())
    assert ("model.item_bias" in struct) == bias


def test_collector_refuses_factors_that_do_not_reproduce_the_scores():
    with pytest.raises(RuntimeError, match="score_factors of DotModel do not reproduce its full_sort_predict"):
        evaluate_factors(DotModel(wrong=True))


def test_information_abundance_alone_does_not_collect_user_states():
    struct = evaluate_factors(DotModel(), metrics=("InformationAbundance",))
    assert "model.item_factors" in struct and "rec.user_factors" not in struct


def test_collector_skips_factors_when_no_metric_needs_them():
    class Exploding(DotModel):
        def score_factors(self, interaction):
            raise AssertionError("computed factors although no metric needs them")

    struct = evaluate_factors(Exploding(), metrics=("Recall",))
    assert "model.item_factors" not in struct


def test_register_metric_rejects_incomplete_classes_and_registers_smaller():
    from recbole.evaluator import register as R

    class NoNeed(AbstractMetric):
        metric_type = EvaluatorType.RANKING

    with pytest.raises(AttributeError, match="metric NoNeed has no attribute \\[metric_need\\]"):
        register_metric(NoNeed)
    assert {"arp", "spectralcollapse", "averagepopularity"} <= set(R.smaller_metrics)
    assert "tailrecall" not in R.smaller_metrics and "informationabundance" not in R.smaller_metrics


def test_sampled_ranking_collects_item_factors_but_no_user_states():
    """Sampled evaluation: one interaction row per (user, candidate), scores one row per user."""
    model, c = DotModel(), collector(["SpectralCollapse"])
    interaction = Interaction({"user_id": torch.tensor([0, 0, 0, 1, 1, 1])})  # 2 users x 3 candidates
    scores = torch.full((2, 6), -float("inf"))
    scores[0, 1:4] = 1.0
    with torch.no_grad():
        c.eval_batch_collect(scores, interaction, torch.tensor([0, 1]), torch.tensor([1, 2]))
        c.model_collect(model)
    struct = c.get_data_struct()
    assert torch.equal(struct.get("model.item_factors"), model.items.detach())
    assert "rec.user_factors" not in struct  # SpectralCollapse then reports the full-ranking hint


def test_plugin_trainers_install_the_sprint_collector():
    from recbole.utils import ModelType

    from recbole_sprint.trainer import SprintTrainer
    from recbole_sprint.utils import get_trainer

    assert SprintTrainer.collector_class is SprintCollector
    assert get_trainer(ModelType.SEQUENTIAL, "SASRec") is SprintTrainer
    special = get_trainer(ModelType.TRADITIONAL, "Pop")  # RecBole's TraditionalTrainer + compat fixes
    assert special.__name__ == "CompatTraditionalTrainer" and special.collector_class is SprintCollector

"""History masking in full-ranking evaluation of sequential models (``eval_exclude_history``) and the
``HistoryShare`` diagnostic, checked against hand computations on a tiny hand-written dataset."""

import os

import numpy as np
import pytest
import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.evaluator.history import UserHistory, history_pairs
from recbole_sprint.evaluator.popularity import tail_mask
from recbole_sprint.quick_start import run_recbole_sprint
from recbole_sprint.trainer import SprintTrainer
from tests.model.recbole_runs import SMALL_ML100K

# Raw sequences (user -> items in time order). u5's test item 'a' also occurs first in its history (a repeat).
SEQUENCES = {
    "u1": ["a", "b", "c", "d", "e"],
    "u2": ["c", "d", "a", "f", "g", "h"],
    "u3": ["e", "f", "g", "a", "b"],
    "u4": ["b", "a", "h", "c", "d"],
    "u5": ["a", "b", "c", "a"],
}
REPEAT_USER = "u5"
TOPK = [1, 2, 3]


def write_dataset(folder, name="tiny"):
    os.makedirs(os.path.join(folder, name))
    with open(os.path.join(folder, name, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, items in SEQUENCES.items():
            for t, item in enumerate(items):
                f.write(f"{user}\t{item}\t{100 * t}\n")
    return folder


def tiny_config(tmp_path, **overrides):
    config = {
        "data_path": write_dataset(str(tmp_path / "data")),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 2,  # shorter than every history: masking must reach past the input sequence
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Hit", "HistoryShare", "TailExposure", "ARP", "TailCoverage", "TailRecall"],
        "topk": TOPK,
        "valid_metric": "Hit@1",
        "tail_ratio": 0.5,
        "train_neg_sample_args": None,
        "state": "ERROR",
        "checkpoint_dir": str(tmp_path / "saved"),
    }
    config.update(overrides)
    return config


class LastItemFirst(SequentialRecommender):
    """Hand-made scores: the last input item first (1000), then every item by ascending id (-id)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def full_sort_predict(self, interaction):
        seq, length = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]  # [B, n], [B]
        scores = -torch.arange(self.n_items, dtype=torch.float).repeat(len(seq), 1)  # [B, I]
        return scores.scatter(1, seq.gather(1, (length - 1)[:, None]), 1000.0)


def evaluate_hand_model(tmp_path, **overrides):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tmp_path, **overrides))
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    trainer = SprintTrainer(config, LastItemFirst(config, train_data._dataset))
    trainer.eval_collector.data_collect(train_data)
    return dataset, trainer, test_data, trainer.evaluate(test_data, load_best_model=False)


def hand_rankings(dataset, masked):
    """{user: (top-3 internal ids, target id)} for the test rows, computed from SEQUENCES only."""
    out = {}
    for user, items in SEQUENCES.items():
        ids = [int(dataset.token2id("item_id", item)) for item in items]
        history, target = ids[:-1], ids[-1]
        candidates = sorted(range(1, dataset.item_num))  # ascending id = the hand model's order after the last item
        ranking = [history[-1]] + [i for i in candidates if i != history[-1]]
        if masked:
            ranking = [i for i in ranking if i not in history or i == target]
        out[user] = (ranking[:3], target)
    return out


def test_user_history_is_every_item_before_the_split_even_beyond_the_input_window(tmp_path):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tmp_path))
    dataset = create_dataset(config)
    _, valid_data, test_data = data_preparation(config, dataset)
    for user, items in SEQUENCES.items():
        uid = int(dataset.token2id("user_id", user))
        ids = [int(dataset.token2id("item_id", item)) for item in items]
        assert valid_data.user_history.of_user(uid).tolist() == ids[:-2]  # training items
        assert test_data.user_history.of_user(uid).tolist() == ids[:-1]  # training + validation items


def test_history_pairs_leave_out_the_rows_target():
    history = UserHistory(items=[5, 6, 7, 1, 2], start=[0, 0, 3], length=[0, 3, 2])
    rows, items = history_pairs(history, torch.tensor([2, 1, 0]), targets=torch.tensor([9, 6, 4]))
    assert list(zip(rows.tolist(), items.tolist())) == [(0, 1), (0, 2), (1, 5), (1, 7)]  # 6 is row 1's target


def test_hand_model_without_masking_ranks_the_last_item_first_and_never_hits(tmp_path):
    dataset, _, _, result = evaluate_hand_model(tmp_path, eval_exclude_history=False)
    assert result["hit@1"] == 0.0
    assert result["historyshare@1"] == 1.0
    # a slot counts as history when masking would remove it: a history item other than the target (u5's
    # repeated target 'a' in its top-3 is a hit, not a repeat)
    shares = []
    for user, (top, target) in hand_rankings(dataset, masked=False).items():
        history = {int(dataset.token2id("item_id", x)) for x in SEQUENCES[user][:-1]} - {target}
        shares.append(np.mean([i in history for i in top]))
    assert result["historyshare@3"] == pytest.approx(np.mean(shares), abs=1e-4)


def test_hand_model_with_masking_equals_the_hand_computed_ranking(tmp_path):
    dataset, trainer, _, result = evaluate_hand_model(tmp_path, eval_exclude_history=True)
    expected = hand_rankings(dataset, masked=True)
    for k in TOPK:
        hits = np.mean([target in top[:k] for top, target in expected.values()])
        assert result[f"hit@{k}"] == pytest.approx(hits, abs=1e-4)
    assert result["hit@1"] > 0  # the masked ranking finds targets at rank 1 (e.g. u5's repeated 'a')
    # HistoryShare is measured on the ranking before masking: the same as without masking
    assert result["historyshare@1"] == 1.0


def test_masking_never_removes_the_target_that_also_occurs_earlier(tmp_path):
    dataset, _, _, result = evaluate_hand_model(tmp_path, eval_exclude_history=True)
    top, target = hand_rankings(dataset, masked=True)[REPEAT_USER]
    assert target == int(dataset.token2id("item_id", "a")) and top[0] == target  # 'a' is rankable, and first


def test_long_tail_metrics_follow_the_masked_top_k(tmp_path):
    dataset, trainer, _, masked = evaluate_hand_model(tmp_path, eval_exclude_history=True)
    _, _, _, unmasked = evaluate_hand_model(tmp_path / "again", eval_exclude_history=False)
    popularity = trainer.eval_collector.data_struct.get("data.item_popularity")  # [I] training counts
    tail = tail_mask(popularity, 0.5)
    for result, is_masked in ((masked, True), (unmasked, False)):
        lists = hand_rankings(dataset, masked=is_masked)
        for k in TOPK:
            tops = [top[:k] for top, _ in lists.values()]
            assert result[f"tailexposure@{k}"] == pytest.approx(np.mean([[bool(tail[i]) for i in t] for t in tops]), abs=1e-4)
            assert result[f"arp@{k}"] == pytest.approx(np.mean([[float(popularity[i]) for i in t] for t in tops]), abs=1e-4)
            covered = {i for t in tops for i in t if tail[i]}
            assert result[f"tailcoverage@{k}"] == pytest.approx(len(covered) / int(tail.sum()), abs=1e-4)
            tail_users = [(top, target) for top, target in lists.values() if tail[target]]
            recall = np.mean([target in top[:k] for top, target in tail_users]) if tail_users else float("nan")
            assert result[f"tailrecall@{k}"] == pytest.approx(recall, abs=1e-4, nan_ok=True)
    changed = [m for m in masked if m.split("@")[0] in ("tailexposure", "arp", "tailcoverage") and masked[m] != unmasked[m]]
    assert changed, "masking changed no long-tail metric of this data"


def test_paper_protocol_run_has_hits_at_rank_one_with_masking(tiny):
    config = tiny(
        **SMALL_ML100K,
        train_mode="full_sequence",
        loss_type="BCE",
        num_negatives=8,
        epochs=3,
        train_batch_size=64,
        metrics=["Hit", "NDCG", "HistoryShare"],
        topk=[1, 5],
        valid_metric="NDCG@5",
    )
    masked_run = run_recbole_sprint("SASRecSPRINT", "ml-100k", config_dict=config, saved=False)
    masked = masked_run["test_result"]
    unmasked_run = run_recbole_sprint(
        "SASRecSPRINT", "ml-100k", config_dict={**config, "eval_exclude_history": False}, saved=False
    )
    unmasked = unmasked_run["test_result"]
    # a masked run also reports its model's unmasked test: what an unmasked run of the same training measures
    assert masked_run["test_result_unmasked"] == unmasked and unmasked_run["test_result_unmasked"] is None
    assert masked["hit@1"] > 0
    assert masked["historyshare@1"] == unmasked["historyshare@1"]  # same model, same ranking before masking
    # every hit of the unmasked top-5 survives the masking (targets are never masked) and moves up or stays
    assert masked["hit@5"] >= unmasked["hit@5"]


def test_eval_exclude_history_rejects_a_non_boolean(tmp_path):
    with pytest.raises(ValueError, match="eval_exclude_history must be True or False"):
        evaluate_hand_model(tmp_path, eval_exclude_history="yes")

"""BERT4RecSPRINT: bidirectional masks (padding and [MASK] keys contribute nothing), lambda = 0 equivalence with
BERT4Rec through RecBole's own Trainer, and the main job end to end."""

import pytest
import torch

from recbole_sprint.config import Config
from recbole_sprint.model.sequential_recommender.bert4recsprint import BERT4RecSPRINT
from recbole_sprint.model.sprint import soft_max_columns

from .recbole_runs import SMALL_ML100K, SPRINT_OFF, assert_valid_metrics, run_main_job, run_with_recbole_trainer

N_ITEMS = 20  # ids 1..19 are items, 0 is padding; BERT4Rec's [MASK] token is id N_ITEMS
TAU = 4.0


class StubDataset:
    def num(self, field):
        return N_ITEMS


def build(tiny, **overrides):
    config = Config(model="BERT4RecSPRINT", dataset="ml-100k", config_dict=tiny(attn_dropout_prob=0.0, **overrides))
    torch.manual_seed(0)
    return BERT4RecSPRINT(config, StubDataset())


MASK = N_ITEMS
SEQS = torch.tensor(
    [
        [3, MASK, 5, 7, MASK, 9, 2, 0, 0, 0],
        [MASK, 4, 11, 0, 0, 0, 0, 0, 0, 0],
    ]
)


def _soft_max_and_probs(model, item_seq):
    """S~ collected by SPRINT's hook in a training forward pass, and the attention matrices it saw."""
    captured = []
    handle = model.trm_encoder.layer[0].multi_head_attention.attn_dropout.register_forward_hook(
        lambda module, inputs, output: captured.append(output.detach())
    )
    model.train()
    model(item_seq)
    handle.remove()
    return model.sprint.soft_max()[0].detach(), captured[0]  # [H], [B, H, n, n]


def test_masks_keep_mask_queries_and_drop_padding_and_mask_keys(tiny):
    model = build(tiny)
    query_mask, key_mask = model.sprint_masks(SEQS)
    assert query_mask.tolist()[1] == [True, True, True] + [False] * 7  # [MASK] is a query
    assert key_mask.tolist()[0] == [True, False, True, True, False, True, True, False, False, False]
    assert key_mask.tolist()[1] == [False, True, True] + [False] * 7
    keep_all = build(tiny, sprint_exclude_mask_keys=False)
    assert torch.equal(keep_all.sprint_masks(SEQS)[1], SEQS != 0)


def test_padding_and_mask_keys_contribute_nothing_to_the_soft_max(tiny):
    model = build(tiny)
    soft_max, probs = _soft_max_and_probs(model, SEQS)
    query = SEQS != 0
    key = query & (SEQS != MASK)
    # by hand: column sums over valid queries, soft max over the valid non-[MASK] key columns of the batch
    sums = torch.einsum("bhij,bi->bhj", probs, query.float())  # [B, H, n]
    expected = torch.stack([torch.logsumexp(TAU * sums[:, h][key], 0) / TAU for h in range(probs.size(1))])
    assert torch.allclose(soft_max, expected, atol=1e-5)
    # padding queries do attend (bidirectional mask) and [MASK]/padding columns do get mass: leaving them in
    # would change S~, so the comparison above can fail
    assert probs[1, :, 3:].sum() > 1.0  # padding query rows of sequence 2 are softmax rows too
    assert probs[0, :, :, 1].sum() > 0.1 and probs[1, :, :, 0].sum() > 0.1  # [MASK] key columns get mass
    everything = torch.einsum("bhij->bhj", probs)  # all rows, all columns
    naive = soft_max_columns(everything, torch.ones_like(key), TAU)
    assert not torch.allclose(naive, soft_max, atol=1e-3)
    # arbitrary values in the excluded columns leave S~ unchanged
    poisoned = sums.clone()
    poisoned[~key.unsqueeze(1).expand_as(poisoned)] = 100.0
    assert torch.allclose(soft_max_columns(poisoned, key, TAU), soft_max, atol=1e-5)


def test_mask_keys_count_when_the_option_is_off(tiny):
    model = build(tiny, sprint_exclude_mask_keys=False)
    soft_max_with_mask_keys, probs = _soft_max_and_probs(model, SEQS)
    query = SEQS != 0
    sums = torch.einsum("bhij,bi->bhj", probs, query.float())
    expected = torch.stack([torch.logsumexp(TAU * sums[:, h][query], 0) / TAU for h in range(probs.size(1))])
    assert torch.allclose(soft_max_with_mask_keys, expected, atol=1e-5)  # option off: [MASK] columns count


def test_bad_exclude_option_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="sprint_exclude_mask_keys must be True or False"):
        build(tiny, sprint_exclude_mask_keys="yes")


def test_weights_zero_trains_exactly_like_bert4rec_with_recbole_trainer(tiny):
    config = tiny(**SMALL_ML100K)
    baseline = run_with_recbole_trainer("BERT4Rec", config)
    sprint_off = run_with_recbole_trainer("BERT4RecSPRINT", {**config, **SPRINT_OFF})
    assert_valid_metrics(baseline)
    assert sprint_off == baseline


def test_main_job_trains_evaluates_and_reloads_bert4recsprint(tiny, tmp_path):
    code, checkpoints = run_main_job("BERT4RecSPRINT", tiny(**SMALL_ML100K), tmp_path)
    assert code == 0 and len(checkpoints) == 1
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=False)["state_dict"]
    assert "sprint.ffn_in.v" in state


def test_full_sequence_rows_train_the_cloze_loss(tiny):
    """train_mode full_sequence: one row per user, masked by RecBole's mask_itemseq transform; a tiny run."""
    config = tiny(train_mode="full_sequence", **SMALL_ML100K)
    result = run_with_recbole_trainer("BERT4RecSPRINT", config)
    assert_valid_metrics(result)
    with pytest.raises(ValueError, match=r"loss_type must be one of \['CE', 'BPR'\] for BERT4RecSPRINT"):
        run_with_recbole_trainer("BERT4RecSPRINT", {**config, "loss_type": "BCE"})


def test_recbole_bert4rec_full_sequence_is_refused_with_the_way_out(tiny):
    with pytest.raises(ValueError, match=r"train_mode 'full_sequence' is not supported by BERT4Rec.*sprint_\*_weight: 0"):
        run_with_recbole_trainer("BERT4Rec", tiny(train_mode="full_sequence"))

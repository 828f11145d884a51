"""Shim 19: BERT4Rec's test-time ``[MASK]`` placement by one scatter, the same tensor as RecBole's per-row loop."""

import types

import torch
from recbole.model.sequential_recommender.bert4rec import BERT4Rec

from recbole_sprint import compat


def _recbole_reconstruct(mask_token, item_seq, item_seq_len):  # recbole/model/sequential_recommender/bert4rec.py:109
    padding = torch.zeros(item_seq.size(0), dtype=torch.long, device=item_seq.device)
    item_seq = torch.cat((item_seq, padding.unsqueeze(-1)), dim=-1)
    for batch_id, last_position in enumerate(item_seq_len):
        item_seq[batch_id][last_position] = mask_token
    return item_seq[:, 1:]


def test_installed_on_recbole_bert4rec():
    assert BERT4Rec.reconstruct_test_data is compat._reconstruct_test_data  # by importing recbole_sprint


def test_hand_case():
    model = types.SimpleNamespace(mask_token=9)
    item_seq = torch.tensor([[1, 2, 0], [3, 4, 5], [6, 0, 0]])
    out = compat._reconstruct_test_data(model, item_seq, torch.tensor([2, 3, 1]))
    # row 1 is full: RecBole drops its oldest item to make room for [MASK]
    assert out.tolist() == [[2, 9, 0], [4, 5, 9], [9, 0, 0]]
    assert item_seq.tolist() == [[1, 2, 0], [3, 4, 5], [6, 0, 0]]  # the input is not written


def test_equals_recbole_loop_on_random_rows():
    generator = torch.Generator().manual_seed(0)
    n, batch, mask_token = 12, 64, 101
    lengths = torch.randint(1, n + 1, (batch,), generator=generator)
    lengths[:2] = torch.tensor([1, n])
    items = torch.randint(1, mask_token, (batch, n), generator=generator)
    item_seq = torch.where(torch.arange(n) < lengths.unsqueeze(1), items, 0)
    model = types.SimpleNamespace(mask_token=mask_token)
    out = compat._reconstruct_test_data(model, item_seq, lengths)
    assert torch.equal(out, _recbole_reconstruct(mask_token, item_seq, lengths))
    assert out.dtype == torch.long and out.shape == (batch, n)

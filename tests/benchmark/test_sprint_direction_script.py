"""benchmarks/sprint_direction.py's attention statistics on a bidirectional encoder (BERT4Rec): every valid query
sees every valid key, on the sequence the encoder saw (shifted, with its [MASK] at the end)."""

import math

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_sprint.config import Config
from recbole_sprint.model.sequential_recommender.bert4recsprint import BERT4RecSPRINT

from .scripts import load_benchmark_script

N_ITEMS = 20


class StubDataset:
    def num(self, field):
        return N_ITEMS


def test_bert4rec_uniform_attention_gives_equal_column_sums(tiny):
    """With Q and K zero every valid query spreads 1 evenly over the sequence's L valid positions, so every key
    column over the L queries sums to exactly 1 and the soft maximum of N equal columns is 1 + log(N)/tau. A
    causal mask would give columns (L - j)/L and a smaller soft maximum."""
    script = load_benchmark_script("sprint_direction")
    config = Config(model="BERT4RecSPRINT", dataset="ml-100k", config_dict=tiny(attn_dropout_prob=0.0))
    torch.manual_seed(0)
    model = BERT4RecSPRINT(config, StubDataset())
    with torch.no_grad():
        for layer in model.trm_encoder.layer:
            attention = layer.multi_head_attention
            for linear in (attention.query, attention.key):
                linear.weight.zero_()
                linear.bias.zero_()
    item_seq = torch.tensor([[3, 5, 7, 9, 0, 0, 0, 0, 0, 0], [4, 11, 0, 0, 0, 0, 0, 0, 0, 0]])
    interaction = Interaction({model.ITEM_SEQ: item_seq, model.ITEM_SEQ_LEN: torch.tensor([4, 2])})
    stats = script.attention_statistics(model, interaction, torch.arange(N_ITEMS, dtype=torch.float))
    assert "forward" not in vars(model)  # the capturing wrapper is removed
    # the encoder saw [5, 7, 9, MASK] and [11, MASK] (first item dropped, [MASK] appended); [MASK] keys are left out
    # (sprint_exclude_mask_keys), so N = 3 + 1 item keys in the batch, each column 1
    assert stats["max column sum"] == pytest.approx(1.0)
    assert stats["log(N)/tau"] == pytest.approx(math.log(4) / 4)
    assert stats["S~ (tau 4)"] == pytest.approx(1.0 + math.log(4) / 4)

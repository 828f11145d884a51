"""SASRecPP (recbole_sprint/model/sequential_recommender/sasrecpp.py, model/layers.py): hand values of RoPE and
RMSNorm, masks, shapes, no biases, the parameter-count formula, initialisation, losses, clear errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from torch import nn

from recbole_sprint.config import Config
from recbole_sprint.model.layers import RMSNorm, RotarySelfAttention, apply_rotary, rotary_cos_sin
from recbole_sprint.model.sequential_recommender.sasrecpp import SASRecPP
from recbole_sprint.utils import parameter_counts

from .recbole_runs import SMALL_ML100K, run_main_job

N_ITEMS = 30  # ids 0 (padding) .. 29


class StubDataset:
    """What SASRecPP's constructor reads from a RecBole dataset: the item count."""

    def __init__(self, n_items=N_ITEMS):
        self.n_items = n_items

    def num(self, field):
        return self.n_items


def build(tiny, model_class=SASRecPP, n_items=N_ITEMS, **overrides):
    config = Config(model=model_class.__name__, dataset="ml-100k", config_dict=tiny(**overrides))
    torch.manual_seed(0)
    return model_class(config, StubDataset(n_items))


SEQS = [[3, 7, 7, 12, 5, 9, 0, 0, 0, 0], [4, 8, 15, 16, 23, 2, 11, 6, 1, 19]]


def batch(seqs=SEQS, targets=(1, 2)):
    """A RecBole-like interaction from right-padded python lists, with next-item targets at every position."""
    item_seq = torch.tensor(seqs)
    valid = item_seq != 0
    following = torch.cat([item_seq[:, 1:], torch.tensor(targets)[:, None]], dim=1)  # [B, n]
    lengths = valid.sum(1)
    following[torch.arange(len(seqs)), lengths - 1] = torch.tensor(targets)
    data = {
        "item_id_list": item_seq,
        "item_length": lengths,
        "item_id": torch.tensor(targets),
        "item_id_target_list": following * valid,
    }
    return Interaction(data)


# -- pure functions -----------------------------------------------------------------------------------
def test_rope_rotates_each_half_split_pair_by_position_times_frequency():
    """Two positions, one head of size 4 (frequencies 1 and 10000^(-1/2) = 0.01), rotation worked out by hand."""
    cos, sin = rotary_cos_sin(seq_len=2, head_size=4, base=10000.0)
    x = torch.tensor([[[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]]])  # [B=1, H=1, n=2, d_h=4]
    rotated = apply_rotary(x, cos, sin)[0, 0]  # [2, 4]
    assert torch.equal(rotated[0], x[0, 0, 0])  # position 0: angle 0, no rotation
    # position 1: pair (x0, x2) = (1, 3) turns by 1 rad, pair (x1, x3) = (2, 4) by 0.01 rad
    c1, s1, c2, s2 = math.cos(1.0), math.sin(1.0), math.cos(0.01), math.sin(0.01)
    expected = torch.tensor([1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2])
    assert torch.allclose(rotated[1], expected, atol=1e-6)
    assert torch.allclose(rotated.norm(dim=-1), x[0, 0].norm(dim=-1))  # a rotation keeps the norm


def test_rope_scores_depend_only_on_the_distance():
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    cos, sin = rotary_cos_sin(seq_len=12, head_size=8)

    def score(i, j):
        return (apply_rotary(q, cos[i], sin[i]) * apply_rotary(k, cos[j], sin[j])).sum()

    assert torch.allclose(score(5, 2), score(9, 6), atol=1e-5)  # distance 3 either way
    assert not torch.allclose(score(5, 2), score(5, 3), atol=1e-3)


def test_rmsnorm_is_its_formula_in_float32_with_a_learned_scale():
    torch.manual_seed(2)
    norm = RMSNorm(8, eps=1e-6)
    assert torch.equal(norm.weight, torch.ones(8)) and [name for name, _ in norm.named_parameters()] == ["weight"]
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(2, 3, 8) * 5
    x64 = x.double()
    expected = x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight.double()
    assert torch.allclose(norm(x).double(), expected, atol=1e-5)
    # bf16 input: statistics in float32, result cast back to bf16 (equal to the float32 result, rounded)
    half = x.bfloat16()
    out = norm(half)
    assert out.dtype == torch.bfloat16 and torch.equal(out, norm(half.float()).bfloat16())
    # eps: a zero vector stays finite
    assert torch.equal(norm(torch.zeros(1, 8)), torch.zeros(1, 8))


def test_rope_needs_heads_of_even_size():
    with pytest.raises(ValueError, match="heads of even size"):
        RotarySelfAttention(hidden_size=6, n_heads=2, attn_dropout_prob=0.0)  # d_h = 3


# -- masks, shapes ----------------------------------------------------------------------------------------
def test_causal_mask_a_later_item_leaves_earlier_outputs_unchanged(tiny):
    model = build(tiny, n_layers=2, attn_dropout_prob=0.0).eval()
    item_seq = torch.tensor(SEQS)
    later = item_seq.clone()
    later[:, 4] = torch.tensor([20, 22])  # position 4 (valid in both rows)
    with torch.no_grad():
        base, other = model(item_seq), model(later)
    assert torch.equal(other[:, :4], base[:, :4])
    assert not torch.allclose(other[:, 4:6], base[:, 4:6])


def test_padding_is_masked_and_right_padding_equals_the_unpadded_sequence(tiny):
    model = build(tiny, n_layers=2, attn_dropout_prob=0.0).eval()
    short = torch.tensor([[3, 7, 7, 12, 5, 9]])
    padded = torch.cat([short, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(padded)[:, :6], model(short), atol=1e-6)
        mask = model.attention_mask(padded)  # [B, 1, n, n]
    assert mask.shape == (1, 1, 10, 10)
    assert not mask[0, 0, 3, 4] and mask[0, 0, 4, 3]  # causal
    assert not mask[0, 0, 9, 7] and mask[0, 0, 9, 5]  # padding keys are masked, even for padding queries


def test_positions_are_relative_so_left_and_right_padding_agree():
    """The docstring's claim: shifting every position by a constant (left padding) leaves the attention output of
    the valid positions unchanged."""
    torch.manual_seed(3)
    attention = RotarySelfAttention(hidden_size=8, n_heads=2, attn_dropout_prob=0.0).eval()
    x = torch.randn(1, 4, 8)
    causal = torch.tril(torch.ones(4, 4, dtype=torch.bool))[None, None]
    cos, sin = rotary_cos_sin(7, 4)
    with torch.no_grad():
        at_zero = attention(x, cos[:4], sin[:4], causal)
        shifted = attention(x, cos[3:], sin[3:], causal)  # positions 3..6
    assert torch.allclose(at_zero, shifted, atol=1e-5)


def test_shapes_attention_probabilities_and_scores(tiny):
    model = build(tiny, n_heads=4, hidden_size=16, inner_size=64, n_layers=2).eval()
    captured = []
    model.layers[0].attention.attn_dropout.register_forward_hook(lambda module, inputs, output: captured.append(output))
    interaction = batch()
    item_seq, lengths = interaction["item_id_list"], interaction["item_length"]
    with torch.no_grad():
        hidden = model(item_seq, lengths)  # [B, n, d]
        user = model.user_representations(interaction)
        scores = model.full_sort_predict(interaction)
        one = model.predict(interaction)
    assert hidden.shape == (2, 10, 16) and user.shape == (2, 16) and scores.shape == (2, N_ITEMS)
    probs = captured[0]
    assert probs.shape == (2, 4, 10, 10)
    assert torch.count_nonzero(torch.triu(probs, diagonal=1)) == 0  # no key after its query
    valid = item_seq != 0
    assert torch.count_nonzero(probs[0][:, :, ~valid[0]]) == 0  # no mass on padding keys
    assert torch.allclose(probs.sum(-1), torch.ones(2, 4, 10), atol=1e-6)  # softmax rows
    assert torch.allclose(user, hidden[torch.arange(2), lengths - 1])
    assert torch.allclose(scores, user @ model.item_embedding.weight.t(), atol=1e-6)  # tied to the input table
    assert torch.allclose(one, scores[torch.arange(2), interaction["item_id"]], atol=1e-6)


def test_attention_dropout_is_the_only_dropout(tiny):
    model = build(tiny, attn_dropout_prob=0.3)
    dropouts = [module for module in model.modules() if isinstance(module, nn.Dropout)]
    assert dropouts == [layer.attention.attn_dropout for layer in model.layers]
    assert all(d.p == 0.3 for d in dropouts)
    model.train()
    with torch.no_grad():  # training mode changes the output only through that dropout
        assert not torch.equal(model(torch.tensor(SEQS)), model(torch.tensor(SEQS)))
    model = build(tiny, attn_dropout_prob=0.0).train()
    with torch.no_grad():
        assert torch.equal(model(torch.tensor(SEQS)), model(torch.tensor(SEQS)))


# -- parameters ------------------------------------------------------------------------------------------
def test_no_parameter_is_a_bias(tiny):
    model = build(tiny, n_layers=2)
    names = [name for name, _ in model.named_parameters()]
    assert not [name for name in names if "bias" in name]
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert len(linears) == 2 * 7 and all(module.bias is None for module in linears)  # q k v o gate up down
    norms = [module for module in model.modules() if isinstance(module, RMSNorm)]
    assert len(norms) == 2 * 2 + 1 and all(len(list(norm.parameters())) == 1 for norm in norms)  # scale only


@pytest.mark.parametrize("d, n_layers, n_items", [(16, 1, 30), (32, 3, 101), (8, 2, 7)])
def test_parameter_count_is_the_formula(tiny, d, n_layers, n_items):
    model = build(tiny, n_items=n_items, hidden_size=d, inner_size=4 * d, n_layers=n_layers, n_heads=2)
    items = n_items - 1  # RecBole's n_items counts the padding row
    formula = (items + 1) * d + n_layers * (4 * d * d + 3 * d * 4 * d + 2 * d) + d
    counts = parameter_counts(model)
    assert sum(p.numel() for p in model.parameters()) == formula == counts["n_params"]
    assert counts["n_params_embedding"] == (items + 1) * d  # the item table, no position table


def test_initialisation_normal_002_unit_norm_scales_zero_padding_row(tiny):
    model = build(tiny, n_items=2000, hidden_size=64, inner_size=256, n_layers=1, initializer_range=0.02)
    assert torch.count_nonzero(model.item_embedding.weight[0]) == 0
    for name, parameter in model.named_parameters():
        if "norm" in name:
            assert torch.equal(parameter, torch.ones_like(parameter)), name
        else:
            values = parameter[1:] if name == "item_embedding.weight" else parameter
            assert abs(values.std().item() - 0.02) < 0.002 and abs(values.mean().item()) < 0.002, name


def test_bad_configs_name_the_key(tiny):
    with pytest.raises(ValueError, match="n_heads must divide hidden_size into heads of even size"):
        build(tiny, hidden_size=16, n_heads=16)
    with pytest.raises(ValueError, match=r"attn_dropout_prob must be in \[0, 1\)"):
        build(tiny, attn_dropout_prob=1.0)
    with pytest.raises(ValueError, match="rope_base must be a number > 0"):
        build(tiny, rope_base=0)
    with pytest.raises(ValueError, match=r"loss_type must be one of \['CE', 'BPR'\] with train_mode 'prefix'"):
        build(tiny, train_mode="prefix", loss_type="BCE")


# -- losses ----------------------------------------------------------------------------------------------
def test_prefix_ce_is_recbole_sasrec_s_loss_at_the_last_position(tiny):
    model = build(tiny, train_mode="prefix", attn_dropout_prob=0.0).train()
    interaction = batch()
    loss = model.calculate_loss(interaction)
    user = model.user_representations(interaction)
    expected = F.cross_entropy(user @ model.item_embedding.weight.t(), interaction["item_id"])
    assert torch.allclose(loss, expected)


def test_prefix_bpr_scores_the_sampled_negative(tiny):
    model = build(tiny, train_mode="prefix", loss_type="BPR", attn_dropout_prob=0.0).train()
    interaction = batch()
    interaction.update(Interaction({"neg_item_id": torch.tensor([5, 6])}))
    user = model.user_representations(interaction)
    items = model.item_embedding.weight
    margin = (user * items[interaction["item_id"]]).sum(-1) - (user * items[torch.tensor([5, 6])]).sum(-1)
    assert torch.allclose(model.calculate_loss(interaction), -F.logsigmoid(margin).mean(), atol=1e-6)


@pytest.mark.parametrize("loss_type", ["CE", "BCE", "sampled_softmax"])
def test_full_sequence_losses_train_every_position(tiny, loss_type):
    model = build(tiny, train_mode="full_sequence", loss_type=loss_type, num_negatives=4, attn_dropout_prob=0.0)
    interaction = batch()
    loss = model.calculate_loss(interaction)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.layers[0].attention.q_proj.weight.grad.abs().sum() > 0
    if loss_type == "CE":  # the mean over all valid positions of the full softmax CE
        with torch.no_grad():
            hidden = model.forward_all_positions(interaction)  # [B, n, d]
            targets = interaction["item_id_target_list"]
            valid = targets > 0
            expected = F.cross_entropy(hidden[valid] @ model.item_embedding.weight.t(), targets[valid])
        assert valid.sum() == 16 and torch.allclose(loss, expected, atol=1e-6)


# -- end to end ------------------------------------------------------------------------------------------
def test_main_job_trains_evaluates_and_reloads_sasrecpp(tiny, tmp_path):
    code, checkpoints = run_main_job("SASRecPP", tiny(**SMALL_ML100K), tmp_path)
    assert code == 0 and len(checkpoints) == 1
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=False)["state_dict"]
    assert "final_norm.weight" in state and not [name for name in state if "bias" in name]

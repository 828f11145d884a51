"""HSTU (recbole_sprint/model/sequential_recommender/hstu.py, model/layers.py): hand values, masks, shapes,
losses, clear errors, and a tiny end-to-end run of the main job on ml-100k."""

import math
import random

import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.model.layers import RelativeBucketedTimeAndPositionBias, relative_time_buckets, time_bucket
from recbole_sprint.model.sequential_recommender.hstu import HSTU

from .recbole_runs import SMALL_ML100K, run_main_job

N_ITEMS = 30  # ids 0 (padding) .. 29


class StubDataset:
    """What HSTU's constructor reads from a RecBole dataset: the item count and the loaded fields."""

    def __init__(self, fields=("user_id", "item_id", "timestamp", "item_id_list", "timestamp_list")):
        self.field2type = dict.fromkeys(fields)

    def num(self, field):
        return N_ITEMS


def hstu_config(tiny, **overrides):
    return tiny(**{"normalize_all": False, "num_negatives": 16, **overrides})


def build(tiny, model_class=HSTU, dataset=None, **overrides):
    config = Config(model=model_class.__name__, dataset="ml-100k", config_dict=hstu_config(tiny, **overrides))
    torch.manual_seed(0)
    return model_class(config, dataset or StubDataset())


def batch(seqs, times, target_times=None, targets=None):
    """A RecBole-like interaction from right-padded python lists."""
    item_seq = torch.tensor(seqs)
    lengths = (item_seq != 0).sum(1)
    data = {
        "item_id_list": item_seq,
        "item_length": lengths,
        "timestamp_list": torch.tensor(times, dtype=torch.float32),
        "timestamp": torch.tensor(target_times or [t[int(n) - 1] + 60.0 for t, n in zip(times, lengths)]),
        "item_id": torch.tensor(targets or [1] * len(seqs)),
    }
    return Interaction(data)


SEQS = [[3, 7, 7, 12, 5, 9, 0, 0, 0, 0], [4, 8, 15, 16, 23, 2, 11, 6, 1, 19]]
TIMES = [[0, 30, 90, 3700, 3800, 90000, 0, 0, 0, 0], [0, 1, 2, 60, 120, 4000, 9000, 9001, 100000, 200000]]


# -- pure functions -----------------------------------------------------------------------------------
def test_time_bucket_hand_values():
    seconds = torch.tensor([0.0, 0.5, 1.0, 60.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0, -60.0, 1e60])
    # floor(ln(max(|dt|, 1)) / 0.301), clamped to [0, 128]
    assert time_bucket(seconds).tolist() == [0, 0, 0, 13, 27, 37, 49, 57, 13, 128]
    assert time_bucket(torch.tensor([1e60]), num_buckets=40).tolist() == [40]


def test_relative_bias_hand_values():
    bias = RelativeBucketedTimeAndPositionBias(max_seq_length=4, num_buckets=128, use_time=True, initializer_range=0.02)
    with torch.no_grad():
        bias.position_weight.copy_(torch.arange(7.0) * 100)  # w_pos[k] = 100 k, k = N-1 + j - i
        bias.time_weight.copy_(torch.arange(129.0))  # w_ts[b] = b
    query_times = torch.tensor([[60.0, 3600.0, 3601.0, 0.0]])
    key_times = torch.tensor([[0.0, 0.0, 3600.0, 0.0]])
    rab = bias(4, relative_time_buckets(query_times, key_times, num_buckets=128))  # [1, 4, 4]
    assert rab.shape == (1, 4, 4)
    assert rab[0, 0, 0].item() == 300 + 13  # j - i = 0, dt = 60 s
    assert rab[0, 1, 0].item() == 200 + 27  # j - i = -1, dt = 1 h
    assert rab[0, 2, 2].item() == 300 + 0  # dt = 1 s
    assert rab[0, 0, 3].item() == 600 + 13  # j - i = 3, dt = 60 s
    positions_only = RelativeBucketedTimeAndPositionBias(4, 128, use_time=False, initializer_range=0.02)
    assert not hasattr(positions_only, "time_weight")
    assert positions_only(4).shape == (1, 4, 4)


# -- timestamps seen by the queries -----------------------------------------------------------------------
def test_query_times_are_the_next_timestamps_and_the_target_time_is_hidden_by_default(tiny):
    model = build(tiny)
    timestamps = torch.tensor([[10.0, 20.0, 30.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    lengths = torch.tensor([3, 4])
    hidden = model.query_timestamps(timestamps, lengths)
    assert hidden[0, :3].tolist() == [20.0, 30.0, 30.0] and hidden[1].tolist() == [2.0, 3.0, 4.0, 4.0]
    shown = model.query_timestamps(timestamps, lengths, next_timestamp=torch.tensor([100.0, 200.0]))
    assert shown[0, :3].tolist() == [20.0, 30.0, 100.0] and shown[1].tolist() == [2.0, 3.0, 4.0, 200.0]


@pytest.mark.parametrize("visible", [False, True])
def test_target_timestamp_reaches_the_model_only_when_visible(tiny, visible):
    model = build(tiny, hstu_target_time_visible=visible).eval()
    interaction = batch(SEQS, TIMES, target_times=[90060.0, 200060.0])
    later = batch(SEQS, TIMES, target_times=[9e8, 9e8])  # same histories, far later targets
    with torch.no_grad():
        changed = not torch.equal(model.user_representations(interaction), model.user_representations(later))
    assert changed == visible


# -- masks, shapes ----------------------------------------------------------------------------------------
def test_causal_mask_future_items_do_not_change_earlier_outputs(tiny):
    model = build(tiny, n_layers=2).eval()
    interaction = batch(SEQS, TIMES)
    item_seq, times = interaction["item_id_list"], interaction["timestamp_list"]
    lengths = interaction["item_length"]
    future_items = item_seq.clone()
    future_items[:, 4:6] = torch.tensor([[20, 21], [22, 24]])  # positions 4, 5 (valid in both rows)
    future_times = times.clone()
    future_times[1, 5:] += 1e6  # row 1, positions >= 5: query 4 sees t[5], so only outputs 0..3 must stay
    with torch.no_grad():
        base = model(item_seq, lengths, times)
        other_items = model(future_items, lengths, times)
        other_times = model(item_seq, lengths, future_times)
    assert torch.equal(other_items[:, :4], base[:, :4])
    assert not torch.allclose(other_items[:, 4:6], base[:, 4:6])
    assert torch.equal(other_times[1, :4], base[1, :4])
    assert not torch.allclose(other_times[1, 4:8], base[1, 4:8])


def test_shapes_with_several_heads_and_normalised_outputs(tiny):
    model = build(tiny, n_heads=4, hidden_size=16, n_layers=2).eval()
    captured = []
    model.layers[0].attn_dropout.register_forward_hook(lambda module, inputs, output: captured.append(output))
    interaction = batch(SEQS, TIMES)
    item_seq, lengths = interaction["item_id_list"], interaction["item_length"]
    with torch.no_grad():
        hidden = model(item_seq, lengths, interaction["timestamp_list"])  # [B, n, d]
        user, items = model.score_factors(interaction)
        scores = model.full_sort_predict(interaction)
        one = model.predict(interaction)
    assert hidden.shape == (2, 10, 16)
    assert model.layers[0].head_size == 4
    probs = captured[0]  # the first forward pass
    assert probs.shape == (2, 4, 10, 10)
    assert torch.count_nonzero(torch.triu(probs, diagonal=1)) == 0  # causal: no key after its query
    norms = hidden.norm(dim=-1)
    assert torch.allclose(norms[item_seq != 0], torch.ones(int((item_seq != 0).sum())), atol=1e-5)
    assert torch.count_nonzero(norms[item_seq == 0]) == 0  # padding stays zero
    assert user.shape == (2, 16) and items.shape == (N_ITEMS, 16) and scores.shape == (2, N_ITEMS)
    assert torch.allclose(user, hidden[torch.arange(2), lengths - 1])
    assert torch.allclose(scores, user @ items.t())
    assert torch.allclose(one, scores[torch.arange(2), interaction["item_id"]])


# -- losses -----------------------------------------------------------------------------------------------
def test_sampled_softmax_matches_a_hand_computation(tiny):
    model = build(tiny, num_negatives=40, sampled_softmax_temperature=0.1)
    user = F.normalize(torch.randn(6, 16), dim=-1)
    positives = torch.tensor([1, 2, 3, 4, 5, 1])
    torch.manual_seed(3)
    loss = model.sampled_softmax_loss(user, positives)
    torch.manual_seed(3)
    negatives = torch.randint(1, N_ITEMS, (6, 40))  # the model's draw
    items = F.normalize(model.item_embedding.weight, dim=-1)
    expected = 0.0
    for row in range(6):
        kept = [k for k in negatives[row].tolist() if k != positives[row].item()]  # a colliding negative is dropped
        logits = items[[positives[row].item()] + kept] @ user[row] / 0.1
        expected += -(logits[0] - torch.logsumexp(logits, 0)).item()
    assert any(positives[row].item() in negatives[row].tolist() for row in range(6))  # collisions did happen
    assert math.isclose(loss.item(), expected / 6, rel_tol=1e-5)


def test_full_softmax_matches_a_hand_computation(tiny):
    model = build(tiny, loss_type="CE", sampled_softmax_temperature=0.5)
    user = F.normalize(torch.randn(4, 16), dim=-1)
    positives = torch.tensor([1, 5, 9, 29])
    items = F.normalize(model.item_embedding.weight[1:], dim=-1)  # padding id 0 is never a candidate
    expected = F.cross_entropy(user @ items.t() / 0.5, positives - 1)
    assert math.isclose(model.full_softmax_loss(user, positives).item(), expected.item(), rel_tol=1e-5)


def test_feed_forward_block_is_off_by_default_and_adds_swiglu_after_each_block(tiny):
    """hstu_ffn: False is the research HSTU (no feed-forward parameters); True adds per block an RMSNorm scale (d)
    and SwiGLU's gate, up and down weights (3 d inner), and each block's output is then x + SwiGLU(RMSNorm(x)) of
    the attention sub-block's output x (recomputed here by hand); causality and zero padding still hold."""
    d, inner = 16, 24
    plain = build(tiny, hidden_size=d, n_layers=2, hstu_time_bias=False)
    with_ffn = build(tiny, hidden_size=d, n_layers=2, hstu_ffn=True, inner_size=inner, hstu_time_bias=False)
    assert all(layer.feed_forward is None and layer.ffn_norm is None for layer in plain.layers)
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(with_ffn) - count(plain) == 2 * (d + 3 * d * inner)
    layer = with_ffn.eval().layers[0]
    captured = []
    layer.linear_dropout.register_forward_hook(lambda module, inputs, output: captured.append(output))
    x = torch.randn(2, 10, d)
    causal = torch.tril(torch.ones(10, 10))
    with torch.no_grad():
        out = layer(x, causal)
        attended = x + layer.output(captured[0])  # the attention sub-block's output
        normed = attended / attended.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * layer.ffn_norm.weight
        ffn = layer.feed_forward
        by_hand = attended + ffn.down_proj(F.silu(ffn.gate_proj(normed)) * ffn.up_proj(normed))
    assert torch.allclose(out, by_hand, atol=1e-5)
    interaction = batch(SEQS, TIMES)
    item_seq, lengths = interaction["item_id_list"], interaction["item_length"]
    future = item_seq.clone()
    future[:, 4:6] = torch.tensor([[20, 21], [22, 24]])
    with torch.no_grad():
        base, other = with_ffn(item_seq, lengths), with_ffn(future, lengths)
    assert torch.equal(other[:, :4], base[:, :4]) and not torch.allclose(other[:, 4:6], base[:, 4:6])
    assert torch.count_nonzero(base[item_seq == 0]) == 0


# -- clear errors -----------------------------------------------------------------------------------------
def test_unknown_loss_type_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match=r"loss_type must be one of \['sampled_softmax', 'CE'\].*'BPR'"):
        build(tiny, loss_type="BPR")


def test_heads_not_dividing_hidden_size_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match=r"n_heads must be .*dividing hidden_size.*n_heads=3, hidden_size=16"):
        build(tiny, n_heads=3, hidden_size=16)


def test_normalised_time_field_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="normalize_all: False"):
        build(tiny, normalize_all=True)


@pytest.mark.parametrize("overrides, message", [
    (dict(hstu_ffn="yes"), r"hstu_ffn must be True or False \(default False\), got the string 'yes'"),  # Config
    (dict(hstu_ffn=True, inner_size=0), r"inner_size must be an integer >= 1 with hstu_ffn: True, got 0"),
])
def test_bad_feed_forward_settings_are_clear_errors(tiny, overrides, message):
    with pytest.raises(ValueError, match=message):
        build(tiny, **overrides)


def _write_dataset_without_time(folder):
    """Pre-split RecBole benchmark files with item lists and no timestamp at all."""
    folder.mkdir()
    rng = random.Random(0)
    for part in ("train", "valid", "test"):
        lines = ["user_id:token\titem_id_list:token_seq\titem_id:token"]
        for user in range(1, 31):
            history = " ".join(str(rng.randint(1, 40)) for _ in range(rng.randint(1, 8)))
            lines.append(f"{user}\t{history}\t{rng.randint(1, 40)}")
        (folder / f"notime.{part}.inter").write_text("\n".join(lines) + "\n")


@pytest.mark.filterwarnings("ignore:using <built-in function len> in Series.agg:FutureWarning")  # RecBole, pandas 2.2+
def test_data_without_time_field_is_a_clear_error_unless_time_bias_is_off(tiny, tmp_path):
    _write_dataset_without_time(tmp_path / "notime")
    settings = dict(
        data_path=str(tmp_path),
        benchmark_filename=["train", "valid", "test"],
        alias_of_item_id=["item_id_list"],
        load_col=None,
    )
    for time_bias in (True, False):
        config = Config(model="HSTU", dataset="notime", config_dict=hstu_config(tiny, hstu_time_bias=time_bias, **settings))
        train_data, _, test_data = data_preparation(config, create_dataset(config))
        if time_bias:
            with pytest.raises(ValueError, match=r"no time-list field \[timestamp_list\].*hstu_time_bias: False"):
                HSTU(config, train_data._dataset)
            continue
        model = HSTU(config, train_data._dataset)  # relative position bias only
        loss = model.calculate_loss(next(iter(train_data)))
        loss.backward()
        assert torch.isfinite(loss) and model.layers[0].relative_bias.position_weight.grad.abs().sum() > 0
        interaction = next(iter(test_data))[0]
        assert model.full_sort_predict(interaction).shape == (interaction.length, model.n_items)


# -- end to end ---------------------------------------------------------------------------------------------
def test_main_job_trains_evaluates_and_reloads_hstu(tiny, tmp_path):
    code, checkpoints = run_main_job("HSTU", hstu_config(tiny, **SMALL_ML100K), tmp_path)
    assert code == 0 and len(checkpoints) == 1
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=False)
    assert "layers.0.relative_bias.time_weight" in state["state_dict"]

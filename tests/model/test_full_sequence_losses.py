"""The shared full-sequence losses: hand-computed values, BCE negatives, sampled-softmax collisions."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbole_sprint.model.losses import (
    COLLISION_LOGIT,
    FullSequenceLoss,
    bce_loss,
    ce_loss,
    sample_position_negatives,
    sample_sequence_negatives,
    sampled_softmax_loss,
)


def _case(seed=0, batch=3, n=4, d=5, n_items=9):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, n, d, generator=gen)
    items = torch.randn(n_items, d, generator=gen)
    targets = torch.tensor([[2, 3, 4, 0], [5, 0, 0, 0], [6, 7, 8, 1]])[:batch]
    return hidden, targets, items


def test_ce_is_mean_over_valid_positions_and_ignores_padding():
    hidden, targets, items = _case()
    expected = []
    for b in range(3):
        for t in range(4):
            if targets[b, t] > 0:
                expected.append(F.cross_entropy((hidden[b, t] @ items.t())[None], targets[b, t][None]))
    assert torch.allclose(ce_loss(hidden, targets, items), torch.stack(expected).mean())
    changed = hidden.clone()
    changed[0, 3] += 100.0  # a padding position
    assert torch.allclose(ce_loss(changed, targets, items), ce_loss(hidden, targets, items))


def test_bce_by_hand_with_negatives_shared_by_positions():
    hidden, targets, items = _case()
    negatives = torch.tensor([[1, 5], [2, 3], [4, 5]])  # [B, N]: one set per sequence
    pos_terms, neg_terms = [], []
    for b in range(3):
        for t in range(4):
            if targets[b, t] == 0:
                continue
            h = hidden[b, t]
            pos_terms.append(-math.log(torch.sigmoid(h @ items[targets[b, t]]).item()))
            for k in negatives[b]:  # the same negatives at every position of sequence b
                neg_terms.append(-math.log(torch.sigmoid(-(h @ items[k])).item()))
    expected = sum(pos_terms) / len(pos_terms) + sum(neg_terms) / len(neg_terms)
    assert bce_loss(hidden, targets, items, negatives).item() == pytest.approx(expected, rel=1e-5)


def test_bce_negatives_never_in_history_and_shared_shape():
    torch.manual_seed(0)
    n_items = 12  # ids 1..11; each row's history leaves few candidates, so rejections happen a lot
    history = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 0, 0], [11, 10, 9, 8, 7, 6, 5, 4, 3, 2], [3, 3, 0, 0, 0, 0, 0, 0, 0, 0]])
    for _ in range(20):
        negatives = sample_sequence_negatives(history, n_items, num_negatives=16)
        assert negatives.shape == (3, 16)
        assert ((negatives >= 1) & (negatives < n_items)).all()
        for row, hist in zip(negatives.tolist(), history.tolist()):
            assert not set(row) & set(hist)
        assert set(negatives[1].tolist()) == {1}  # the only item not in row 1's history
    with pytest.raises(ValueError, match="every item"):
        sample_sequence_negatives(torch.arange(1, 12)[None], n_items, 4)
    # as wide as the catalogue, but padded and repeated: items are left, so it samples
    assert set(sample_sequence_negatives(torch.tensor([[1, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0]]), n_items, 8)
               .flatten().tolist()) <= set(range(4, 12))


def test_bce_negatives_uniform_over_the_items_outside_the_history():
    """Each item outside the row's history about equally often (60,000 draws: 10,000 expected each, a standard
    deviation of ~91), history items and padding never; the rank of each draw by hand on a tiny case."""
    gen = torch.Generator().manual_seed(0)
    history = torch.tensor([[2, 3, 7, 0, 3], [9, 0, 0, 0, 0]])
    negatives = sample_sequence_negatives(history, 10, num_negatives=60000, generator=gen)
    for row, allowed in ((0, [1, 4, 5, 6, 8, 9]), (1, [1, 2, 3, 4, 5, 6, 7, 8])):
        counts = torch.bincount(negatives[row], minlength=10)
        expected = 60000 / len(allowed)
        assert set(torch.nonzero(counts).flatten().tolist()) == set(allowed)
        assert (counts[allowed] - expected).abs().max() < 5 * (expected * (1 - 1 / len(allowed))) ** 0.5
    # by hand: history {2, 3} of items 1..5 leaves [1, 4, 5]; a uniform r picks the floor(3 r)-th of them
    negatives = sample_sequence_negatives(torch.tensor([[3, 2, 0]]), 6, 12, generator=torch.Generator().manual_seed(5))
    r = torch.rand(1, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert negatives.tolist() == torch.tensor([1, 4, 5])[(3 * r).long()].tolist()


def test_full_sequence_bce_excludes_inputs_and_targets(monkeypatch):
    seen = {}
    original = sample_sequence_negatives

    def spy(history, n_items, num_negatives, generator=None):
        seen["history"] = history
        seen["negatives"] = original(history, n_items, num_negatives, generator)
        return seen["negatives"]

    monkeypatch.setattr("recbole_sprint.model.losses.sample_sequence_negatives", spy)
    hidden, targets, items = _case()
    item_seq = torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 7, 8]])
    config = {"loss_type": "BCE", "num_negatives": 4, "sampled_softmax_temperature": 0.05}
    loss = FullSequenceLoss(config, n_items=9)(hidden, item_seq, targets, items)
    assert torch.isfinite(loss)
    assert seen["negatives"].shape == (3, 4)
    for row, seq, tgt in zip(seen["negatives"].tolist(), item_seq.tolist(), targets.tolist()):
        assert not set(row) & (set(seq) | set(tgt))


def test_sampled_softmax_masks_collisions():
    hidden, targets, items = _case()
    negatives = sample_position_negatives(targets, 9, 3, generator=torch.Generator().manual_seed(0))
    assert negatives.shape == (3, 4, 3)
    negatives[..., 0] = targets  # every position: its first negative is its own positive (others may be too)
    tau = 0.05
    expected = []
    for b in range(3):
        for t in range(4):
            if targets[b, t] == 0:
                continue
            h = hidden[b, t]
            logits = torch.stack([h @ items[targets[b, t]]] + [h @ items[k] for k in negatives[b, t]]) / tau
            for j, k in enumerate(negatives[b, t].tolist()):
                if k == targets[b, t]:  # a negative equal to the positive: masked
                    logits[1 + j] = COLLISION_LOGIT
            expected.append(F.cross_entropy(logits[None], torch.tensor([0])))
    for every_position in (False, True):
        loss = sampled_softmax_loss(hidden, targets, items, negatives, tau, every_position)
        assert torch.allclose(loss, torch.stack(expected).mean(), rtol=1e-5)
        # all negatives colliding: only the positive is left, the loss is 0 (unmasked it would be log(4) or more)
        all_collide = targets[..., None].expand(-1, -1, 3).clone()
        collided = sampled_softmax_loss(hidden, targets, items, all_collide, tau, every_position)
        assert collided.item() == pytest.approx(0.0, abs=1e-6)


def test_bce_target_negatives_may_be_history_items_but_never_count_against_their_own_position():
    hidden, targets, items = _case()
    negatives = torch.tensor([[1, 2, 5], [4, 6, 7], [3, 8, 6]])  # [B, N]; row 0: 1 and 2 are its targets
    positive = (hidden * items[targets]).sum(-1)
    expected_negative = []
    for b in range(3):
        for t in range(4):
            if targets[b, t] == 0:
                continue
            for k in negatives[b].tolist():
                if k != targets[b, t]:  # the position's own target is left out, every other item counts
                    expected_negative.append(F.softplus(hidden[b, t] @ items[k]))
    expected = F.softplus(-positive[targets > 0]).mean() + torch.stack(expected_negative).mean()
    assert torch.allclose(bce_loss(hidden, targets, items, negatives), expected, rtol=1e-5)


@pytest.mark.parametrize("loss_type", ["BCE", "sampled_softmax"])
def test_negatives_exclude_picks_where_negatives_come_from(monkeypatch, loss_type):
    hidden, targets, items = _case()
    item_seq = torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 7, 8]])
    drawn = {}

    def spy(name, original):
        def wrapped(*args, **kwargs):
            drawn[name] = original(*args, **kwargs)
            return drawn[name]

        return wrapped

    import recbole_sprint.model.losses as losses

    for name in ("sample_sequence_negatives", "sample_position_negatives"):
        monkeypatch.setattr(losses, name, spy(name, getattr(losses, name)))
    base = {"loss_type": loss_type, "num_negatives": 4, "sampled_softmax_temperature": 0.05}
    # history: one sampler that excludes the window, for both losses
    loss = FullSequenceLoss({**base, "negatives_exclude": "history"}, n_items=9)(hidden, item_seq, targets, items)
    assert torch.isfinite(loss) and set(drawn) == {"sample_sequence_negatives"}
    negatives = drawn["sample_sequence_negatives"].view(3, -1)
    for row, seq, tgt in zip(negatives.tolist(), item_seq.tolist(), targets.tolist()):
        assert not set(row) & (set(seq) | set(tgt))
    drawn.clear()
    # target: no exclusion at sampling time (sampled_softmax keeps its per-position sampler)
    FullSequenceLoss({**base, "negatives_exclude": "target"}, n_items=9)(hidden, item_seq, targets, items)
    assert set(drawn) == ({"sample_position_negatives"} if loss_type == "sampled_softmax" else set())
    # unset: each loss's default
    assert FullSequenceLoss(base, n_items=9).negatives_exclude == {"BCE": "history", "sampled_softmax": "target"}[loss_type]


@pytest.mark.parametrize(
    "config, message",
    [
        ({"loss_type": "BCE", "negatives_exclude": "items"}, r"negatives_exclude must be one of \['history', 'target'\]"),
        ({"loss_type": "BPR"}, r"loss_type must be one of \['CE', 'BCE', 'sampled_softmax'\]"),
        ({"loss_type": "BCE", "num_negatives": 0}, "num_negatives must be an integer >= 1"),
        ({"loss_type": "sampled_softmax", "num_negatives": 8, "sampled_softmax_temperature": 0}, "temperature"),
    ],
)
def test_bad_loss_config_is_a_clear_error(config, message):
    full = {"num_negatives": 32, "sampled_softmax_temperature": 0.05, **config}
    with pytest.raises(ValueError, match=message):
        FullSequenceLoss(full, n_items=10)


def test_bce_with_history_negatives_never_reads_a_device_value_on_the_host():
    """Forward and backward of BCE with history negatives run no operator that makes the host wait for a GPU (a
    scalar read, a boolean-mask selection), counted with torch.profiler on the CPU: the rejection sampler and the
    boolean-indexed means this replaced ran ~10 such operators a step."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    n_items = 200
    item_seq, targets = torch.randint(1, n_items, (16, 10)), torch.randint(1, n_items, (16, 10))
    item_seq[:4, :3] = targets[:4, :3] = 0  # padding
    hidden = torch.randn(16, 10, 8, requires_grad=True)
    items = torch.randn(n_items, 8, requires_grad=True)
    loss_fn = FullSequenceLoss({"loss_type": "BCE", "num_negatives": 16, "sampled_softmax_temperature": 0.05}, n_items)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss_fn(hidden, item_seq, targets, items).backward()
    waits = {"aten::nonzero", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::item"}
    assert not waits & {event.key for event in prof.key_averages()}
    assert hidden.grad.abs().sum() > 0 and items.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_type", ["CE", "sampled_softmax"])
def test_every_position_form_equals_the_indexed_one_and_never_reads_a_device_value(loss_type):
    """``every_position`` (what a CUDA graph records: padded positions scored and left out of a masked mean, no
    boolean indexing) gives the indexed form's loss and gradients, also with a padded position's output changed, and
    runs no operator that makes the host wait for a GPU."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    n_items = 50
    item_seq, targets = torch.randint(1, n_items, (6, 7)), torch.randint(1, n_items, (6, 7))
    item_seq[:3, 4:] = targets[:3, 4:] = 0  # padding
    loss_fn = FullSequenceLoss({"loss_type": loss_type, "num_negatives": 5, "sampled_softmax_temperature": 0.5,
                                "negatives_exclude": "target"}, n_items)
    results = []
    for every_position in (False, True):
        hidden = torch.randn(6, 7, 8, generator=torch.Generator().manual_seed(1)).requires_grad_()
        if every_position:
            with torch.no_grad():
                hidden[0, 5] += 100.0  # a padded position's output: no effect on the loss
        items = torch.randn(n_items, 8, generator=torch.Generator().manual_seed(2)).requires_grad_()
        torch.manual_seed(3)  # the same negatives for both forms
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss = loss_fn(hidden, item_seq, targets, items, every_position=every_position)
            loss.backward()
        results.append((loss.detach(), hidden.grad, items.grad, {event.key for event in prof.key_averages()}))
    (indexed, hidden_grad, items_grad, _), (dense, dense_hidden_grad, dense_items_grad, ops) = results
    assert torch.allclose(dense, indexed, rtol=1e-6) and indexed.item() > 0
    assert torch.allclose(dense_hidden_grad, hidden_grad, atol=1e-7) and dense_hidden_grad[0, 5].abs().sum() == 0
    assert torch.allclose(dense_items_grad, items_grad, atol=1e-7)
    assert not {"aten::nonzero", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::item"} & ops


def test_item_rows_is_indexing_with_the_padding_row_left_without_gradient():
    """``item_rows`` (an embedding lookup, whose backward sums repeated ids in parallel) gives ``items[ids]`` and its
    gradient, except that the padding row 0 gets none from it; a loss's gradient is then indexing's (its padded
    positions weigh 0)."""
    from recbole_sprint.model.losses import item_rows

    torch.manual_seed(0)
    ids = torch.tensor([[3, 3, 0, 0], [1, 3, 2, 0]])  # repeats, padding
    upstream = torch.randn(2, 4, 5)
    grads = []
    for lookup in (item_rows, lambda table, index: table[index]):
        items = torch.randn(4, 5, generator=torch.Generator().manual_seed(1)).requires_grad_()
        rows = lookup(items, ids)
        assert torch.equal(rows, items.detach()[ids])
        (rows * upstream).sum().backward()
        grads.append(items.grad)
    assert torch.allclose(grads[0][1:], grads[1][1:]) and grads[0][0].abs().sum() == 0 < grads[1][0].abs().sum()
    hidden, targets, items = _case()  # BCE through item_rows against the same formula through indexing
    negatives = torch.tensor([[1, 5], [2, 3], [4, 5]])  # never a target of their row: every pair counts
    table, reference = items.clone().requires_grad_(), items.clone().requires_grad_()
    bce_loss(hidden, targets, table, negatives).backward()
    valid = targets > 0
    positive = (hidden * reference[targets]).sum(-1)
    negative = torch.einsum("bnd,bkd->bnk", hidden, reference[negatives])
    ((F.softplus(-positive) * valid).sum() / valid.sum()
     + (F.softplus(negative) * valid[..., None]).sum() / (valid.sum() * 2)).backward()
    assert torch.allclose(table.grad, reference.grad, atol=1e-6) and table.grad.abs().sum() > 0

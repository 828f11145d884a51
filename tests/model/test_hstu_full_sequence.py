"""HSTU / HSTUSPRINT with train_mode full_sequence: all-position pass vs prefix passes (both query-time
conventions), cosine/temperature scores in the BCE loss, lambda = 0 equivalence and a tiny end-to-end run."""

import pytest
import torch
import torch.nn.functional as F

from recbole_sprint.model.losses import bce_loss
from recbole_sprint.model.sequential_recommender.hstusprint import HSTUSPRINT

from .recbole_runs import SMALL_ML100K, SPRINT_OFF, assert_valid_metrics, run_main_job, run_with_recbole_trainer
from .test_hstu import SEQS, TIMES, batch, build, hstu_config

FULL = {"train_mode": "full_sequence"}


@pytest.mark.parametrize("visible", [True, False])
def test_every_position_equals_the_prefix_pass_ending_there(tiny, visible):
    model = build(tiny, hstu_target_time_visible=visible, **FULL).eval()
    interaction = batch(SEQS, TIMES)
    times, lengths = interaction["timestamp_list"], interaction["item_length"]
    with torch.no_grad():
        everything = model.forward_all_positions(interaction)  # [B, n, d]
        for t in (0, 3, 5):
            prefix = interaction["item_id_list"].clone()
            prefix[:, t + 1 :] = 0
            # visible: position t is biased with t[t+1], its target's time; else with its own time t[t]
            if visible:
                following = torch.where(lengths > t + 1, times[:, min(t + 1, times.size(1) - 1)], interaction["timestamp"])
            else:
                following = None
            expected = model.forward(prefix, torch.full_like(lengths, t + 1), times, following)[:, t]
            assert torch.allclose(everything[:, t], expected, atol=1e-5)


def test_bce_scores_are_cosines_over_the_temperature(tiny):
    model = build(tiny, loss_type="BCE", sampled_softmax_temperature=0.5, **FULL).eval()
    interaction = batch(SEQS, TIMES)
    targets = interaction["item_id_list"].roll(-1, dims=1) * (interaction["item_id_list"] != 0)
    interaction.update(type(interaction)({"item_id_target_list": targets}))
    torch.manual_seed(3)
    loss = model.calculate_loss(interaction)
    torch.manual_seed(3)  # the same negatives, drawn the same way
    from recbole_sprint.model.losses import sample_sequence_negatives

    history = torch.cat([interaction["item_id_list"], targets], dim=1)
    negatives = sample_sequence_negatives(history, model.n_items, model.num_negatives)
    hidden = model.forward_all_positions(interaction)  # unit rows
    expected = bce_loss(hidden / 0.5, targets, F.normalize(model.item_embedding.weight, dim=-1), negatives)
    assert torch.allclose(loss, expected, atol=1e-5)
    assert model.full_sequence_score_scale == 2.0


def test_bce_is_rejected_in_prefix_mode_with_the_allowed_values(tiny):
    with pytest.raises(ValueError, match=r"loss_type must be one of \['sampled_softmax', 'CE'\] with train_mode 'prefix'"):
        build(tiny, loss_type="BCE")


def test_full_sequence_weights_zero_trains_exactly_like_hstu(tiny):
    config = hstu_config(tiny, loss_type="BCE", **FULL, **SMALL_ML100K)
    baseline = run_with_recbole_trainer("HSTU", config)
    sprint_off = run_with_recbole_trainer("HSTUSPRINT", {**config, **SPRINT_OFF})
    assert_valid_metrics(baseline)
    assert sprint_off == baseline


def test_main_job_hstusprint_full_sequence(tiny, tmp_path):
    code, checkpoints = run_main_job("HSTUSPRINT", hstu_config(tiny, loss_type="BCE", **FULL, **SMALL_ML100K), tmp_path)
    assert code == 0 and len(checkpoints) == 1
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=False)["state_dict"]
    assert "sprint.value.v" in state


def test_hstusprint_full_sequence_sees_every_valid_query(tiny):
    model = build(tiny, HSTUSPRINT, n_heads=2, hidden_size=16, **FULL).train()
    interaction = batch(SEQS, TIMES)
    rows = []
    original = model.sprint.observe
    model.sprint.observe = lambda q, k: (rows.append(q), original(q, k))[1]
    model.forward_all_positions(interaction)
    assert len(rows) == 1 and torch.equal(rows[0], interaction["item_id_list"] != 0)
    attn, _, _ = model.sprint()
    assert attn > 0

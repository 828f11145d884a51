"""SASRecPPSPRINT: the one regulariser wired to SASRec++'s blocks (W_V/W_O, W_up/W_down; W_gate left out); with
every weight 0 it trains exactly like SASRecPP through RecBole's own Trainer; the main job end to end."""

import pytest
import torch

from recbole_sprint.model.sequential_recommender.sasrecppsprint import SASRecPPSPRINT

from .recbole_runs import SMALL_ML100K, SPRINT_OFF, assert_valid_metrics, run_main_job, run_with_recbole_trainer
from .test_sasrecpp import SEQS, batch, build


def test_blocks_reference_value_output_up_and_down_projections(tiny):
    model = build(tiny, SASRecPPSPRINT, n_heads=2, hidden_size=16, inner_size=64, n_layers=2)
    blocks = model.sprint_blocks()
    assert len(blocks) == 2
    for block, layer in zip(blocks, model.layers):
        assert block.probs_module is None and block.column_sums_module is layer.attention.column_sums  # dense too
        assert block.value_module is layer.attention.v_proj and block.output_module is layer.attention.o_proj
        assert block.ffn_in_module is layer.feed_forward.up_proj and block.ffn_out_module is layer.feed_forward.down_proj
        assert torch.equal(block.value_weight(), layer.attention.v_proj.weight.reshape(2, 8, 16))  # [H, d_h, d]
    assert model.sprint.has_ffn and model.sprint.n_heads == 2


def test_soft_max_is_taken_over_the_softmax_probabilities_applied_to_v(tiny):
    model = build(tiny, SASRecPPSPRINT, n_heads=2, hidden_size=16, sprint_temperature=2.0, attn_dropout_prob=0.3)
    model.train()
    captured = []
    model.layers[0].attention.attn_dropout.register_forward_hook(lambda module, inputs, output: captured.append(output))
    item_seq = torch.tensor(SEQS)
    model(item_seq)
    (probs,) = captured  # [B, H, n, n], after dropout
    assert (probs > 1).any()  # dropout rescaled the kept entries: the hook sees the matrix applied to V
    valid = item_seq != 0
    expected = []
    for head in range(2):
        sums = [probs[b, head][valid[b]][:, valid[b]].sum(0) for b in range(2)]  # valid queries, valid keys
        expected.append(torch.logsumexp(2.0 * torch.cat(sums), 0) / 2.0)
    assert torch.allclose(model.sprint.soft_max()[0], torch.stack(expected), atol=1e-6)


def test_ffn_term_reaches_up_and_down_but_not_the_gate(tiny):
    model = build(tiny, SASRecPPSPRINT, **{**SPRINT_OFF, "sprint_ffn_weight": 1.0}).train()
    model(torch.tensor(SEQS))
    attn, ffn, emb = model.sprint()
    assert ffn > 0 and attn == 0 and emb == 0
    ffn.backward()
    feed_forward = model.layers[0].feed_forward
    assert feed_forward.up_proj.weight.grad.abs().sum() > 0 and feed_forward.down_proj.weight.grad.abs().sum() > 0
    assert feed_forward.gate_proj.weight.grad is None  # W_gate is not regularised (the authors' choice)
    assert model.layers[0].attention.v_proj.weight.grad is None


def test_attention_term_reaches_query_key_value_and_output(tiny):
    model = build(tiny, SASRecPPSPRINT, **{**SPRINT_OFF, "sprint_attn_weight": 1.0}).train()
    model(torch.tensor(SEQS))
    attn, _, _ = model.sprint()
    assert torch.isfinite(attn) and attn > 0
    attn.backward()
    attention = model.layers[0].attention
    for projection in (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj):  # S~ via q, k
        assert projection.weight.grad.abs().sum() > 0


def test_full_sequence_loss_adds_the_weighted_terms(tiny):
    model = build(tiny, SASRecPPSPRINT, train_mode="full_sequence", loss_type="BCE", num_negatives=4).train()
    loss = model.calculate_loss(batch())
    parts = model.sprint.pop_epoch_parts()
    assert parts["sprint_attn"] > 0 and parts["sprint_ffn"] > 0 and parts["sprint_emb"] > 0
    assert loss.item() == pytest.approx(sum(parts.values()), rel=1e-5)  # rec + the three weighted terms


def test_weights_zero_trains_exactly_like_sasrecpp_with_recbole_trainer(tiny):
    """Full-sequence BCE (the authors' protocol) and prefix CE (RecBole's), one epoch each, 12 metric decimals."""
    for mode in ({"train_mode": "full_sequence", "loss_type": "BCE", "train_batch_size": 64},
                 {"train_mode": "prefix", "loss_type": "CE"}):
        config = tiny(metric_decimal_place=12, **mode, **SMALL_ML100K)
        baseline = run_with_recbole_trainer("SASRecPP", config)
        sprint_off = run_with_recbole_trainer("SASRecPPSPRINT", {**config, **SPRINT_OFF})
        assert_valid_metrics(baseline)
        assert sprint_off == baseline, mode
    # ...and a real weight does change training (so the comparison above can fail)
    assert run_with_recbole_trainer("SASRecPPSPRINT", {**config, **SPRINT_OFF, "sprint_attn_weight": 5.0}) != baseline


def test_main_job_trains_evaluates_and_reloads_sasrecppsprint(tiny, tmp_path):
    code, checkpoints = run_main_job("SASRecPPSPRINT", tiny(**SMALL_ML100K), tmp_path)
    assert code == 0 and len(checkpoints) == 1
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=False)["state_dict"]
    assert "sprint.value.v" in state and "sprint.ffn_in.u" in state and "sprint.embedding.u" in state


def test_dense_column_sums_node_under_bfloat16_autocast(tiny):
    """The one-node P V + column sums (dense attention) in a bf16 autocast step, as the 0.34B configuration trains:
    the sums reach the regulariser, and the attention term's gradient reaches W_Q in the parameters' float32."""
    model = build(tiny, SASRecPPSPRINT, **{**SPRINT_OFF, "sprint_attn_weight": 1.0}).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.tensor(SEQS))
        assert model.sprint._column_sums[0].dtype == torch.bfloat16  # [B, H, n], from the bf16 probabilities
        attn, _, _ = model.sprint()
    assert torch.isfinite(attn) and attn > 0
    attn.backward()
    grad = model.layers[0].attention.q_proj.weight.grad
    assert grad.dtype == torch.float32 and grad.abs().sum() > 0

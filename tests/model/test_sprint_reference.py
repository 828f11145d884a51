"""SPRINT against an independent, deliberately naive re-implementation of the spec's formulas (issue 24).

The reference (:func:`reference_terms`) is written from ``../shared/spec/sprint.md`` sections 1.2-1.3 alone, with
Python loops over layers, heads, sequences and key columns, in float64, and uses no function of
``recbole_sprint/model/sprint.py``:

* per layer and head, column sums ``c[b, h, j] = sum_i P[b, h, i, j]`` of the attention matrix applied to ``V``
  (after attention dropout) over valid queries ``i`` (and ``j <= i`` for a causal model), for valid keys ``j``
  only (BERT4Rec: no causal condition, ``[MASK]`` keys left out);
* one soft maximum per head over every valid ``(b, j)`` of the batch: ``(1/tau) logsumexp(tau c)``;
* ``attn_l = log1p(sqrt(sum_h S_h sigma(W_V,h)^2) sigma(W_O))``, ``ffn_l = log1p(sigma(W_up) sigma(W_down))``,
  ``emb = log1p(sigma(E))``; ``lambda_attn mean_l attn_l + lambda_ffn mean_l ffn_l + lambda_emb emb``;
* ``sigma`` by power iteration (``u = W v / |W v|``, ``v = W^T u / |W^T u|``, ``sigma = |W v|``) started from the
  model's stored ``v`` (detached), with autograd through the iterate; the new ``v`` is the next step's start.

The weights are read from the backbones' own modules (not from SPRINT's block wiring), and the attention matrix
is taken from the backbone and checked to be the one multiplied with ``V`` (its product with the value
projection's output is the input of what follows, e.g. ``W_O``). The plugin's returned terms and the gradients
of the whole training loss with respect to every parameter are compared with the reference over two training
steps (the second one checks the warm start) on tiny float64 models of the four SPRINT backbones, with
attention dropout on and a fixed seed, and on SASRecPPSPRINT with ``attention_impl: fused`` (the attention hands
SPRINT its column sums; the reference's pass runs dense, dropout off). :func:`test_the_comparison_fails_for_a_wrong_formula` checks that the
comparison does fail when the plugin's formula is changed (monkeypatched mutants). The last tests check the
direction of the attention term: one gradient step on it alone lowers the column sums' soft and hard maxima.
"""

import contextlib
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from recbole_sprint.config import Config
from recbole_sprint.model import layers as layers_module
from recbole_sprint.model import sprint as sprint_module
from recbole_sprint.model.sequential_recommender.bert4recsprint import BERT4RecSPRINT
from recbole_sprint.model.sequential_recommender.hstusprint import HSTUSPRINT
from recbole_sprint.model.sequential_recommender.sasrecppsprint import SASRecPPSPRINT
from recbole_sprint.model.sequential_recommender.sasrecsprint import SASRecSPRINT

N_ITEMS = 12  # ids 1..11 are items, 0 is padding; BERT4Rec's [MASK] is id 12
MASK = N_ITEMS
TAU = 2.0
N_LAYERS, N_HEADS = 2, 2
WEIGHTS = {"sprint_attn_weight": 1.5, "sprint_ffn_weight": 0.3, "sprint_emb_weight": 0.2}
SEQS = [[3, 7, 7, 11, 5, 0, 0, 0], [4, 8, 2, 10, 6, 1, 9, 3], [5, 9, 0, 0, 0, 0, 0, 0]]  # right padding
TARGETS = [2, 5, 1]
TIMES = [[0, 30, 90, 3700, 3800, 0, 0, 0], [0, 1, 2, 60, 120, 4000, 9000, 9001], [0, 100000, 0, 0, 0, 0, 0, 0]]
# BERT4Rec's cloze input: [MASK] at some positions (never position 0: RecBole reads masked index 0 as "none")
MASKED_SEQS = [[3, MASK, 7, 11, MASK, 0, 0, 0], [4, 8, MASK, 10, 6, 1, 9, MASK], [5, MASK, 0, 0, 0, 0, 0, 0]]
MASKED_INDEX = [[1, 4], [2, 7], [1, 0]]
# tolerances (measured differences: at most 1e-11 absolute, float32 rounding where a backbone computes its softmax
# or loss in float32; the smallest effect of a wrong formula seen: 3e-5 on a gradient, 1e-3 relative on a term)
VALUE_TOL = dict(rtol=1e-9, atol=1e-12)
GRAD_TOL = dict(rtol=1e-6, atol=1e-10)


class StubDataset:
    """What the four constructors read from a RecBole dataset: the item count and the loaded fields."""

    field2type = dict.fromkeys(("user_id", "item_id", "timestamp", "item_id_list", "timestamp_list"))

    def num(self, field):
        return N_ITEMS


@contextlib.contextmanager
def float64_default():
    """float64 as torch's default dtype (RecBole's BERT4Rec builds a float32 one-hot with ``torch.zeros``)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread (on a shared 2-core machine, two threads made a step ~8x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- the four backbones: how to build them, a batch, their weights and their attention -----------------------
def _next_item_batch():
    item_seq = torch.tensor(SEQS)
    valid = item_seq != 0
    lengths = valid.sum(1)
    following = torch.cat([item_seq[:, 1:], torch.zeros(len(SEQS), 1, dtype=torch.long)], 1)
    following[torch.arange(len(SEQS)), lengths - 1] = torch.tensor(TARGETS)
    return {"item_id_list": item_seq, "item_length": lengths, "item_id": torch.tensor(TARGETS),
            "item_id_target_list": following * valid}


def _hstu_batch():
    data = _next_item_batch()
    times = torch.tensor(TIMES, dtype=torch.float64)
    data["timestamp_list"] = times
    data["timestamp"] = times[torch.arange(len(SEQS)), data["item_length"] - 1] + 60.0
    return data


def _cloze_batch():
    item_seq, masked_index = torch.tensor(SEQS), torch.tensor(MASKED_INDEX)
    positives = item_seq.gather(1, masked_index) * (masked_index > 0)
    return {"item_id_list": item_seq, "item_length": (item_seq != 0).sum(1),
            "Mask_item_id_list": torch.tensor(MASKED_SEQS),
            "Pos_item_id": positives, "Neg_item_id": torch.ones_like(positives), "MASK_INDEX": masked_index}


def _recbole_weights(model):
    """Per layer: (attention-probs module, value module, W_V [H*d_v, d], W_O's module, W_1, W_2) of RecBole's encoder."""
    for layer in model.trm_encoder.layer:
        attention, ffn = layer.multi_head_attention, layer.feed_forward
        yield (attention.attn_dropout, attention.value, attention.value.weight, attention.dense,
               ffn.dense_1.weight, ffn.dense_2.weight)


def _sasrecpp_weights(model):
    for layer in model.layers:
        attention, ffn = layer.attention, layer.feed_forward
        yield (attention.attn_dropout, attention.v_proj, attention.v_proj.weight, attention.o_proj,
               ffn.up_proj.weight, ffn.down_proj.weight)


def _hstu_weights(model):
    for layer in model.layers:
        d = layer.uvqk.weight.size(1)  # rows of uvqk: U, V, Q, K blocks of d each (d_v * H = d)
        ffn = layer.feed_forward  # None: the research HSTU; hstu_ffn: True: SwiGLU, W_1 = W_up, W_2 = W_down
        yield (layer.attn_dropout, layer.uvqk, layer.uvqk.weight[d : 2 * d], layer.output,
               None if ffn is None else ffn.up_proj.weight, None if ffn is None else ffn.down_proj.weight)


CASES = {
    "SASRecSPRINT": dict(
        model=SASRecSPRINT, causal=True, batch=_next_item_batch, layers=_recbole_weights,
        config=dict(train_mode="full_sequence", loss_type="BCE", num_negatives=4, attn_dropout_prob=0.3,
                    hidden_dropout_prob=0.1)),
    "SASRecPPSPRINT": dict(
        model=SASRecPPSPRINT, causal=True, batch=_next_item_batch, layers=_sasrecpp_weights,
        config=dict(train_mode="full_sequence", loss_type="BCE", num_negatives=4, attn_dropout_prob=0.3)),
    # the fused attention (no n x n matrix; it hands SPRINT the column sums itself): the plugin's pass runs fused,
    # the reference's pass dense (to see P), so no attention dropout (the fused path draws its masks elsewhere)
    "SASRecPPSPRINT, fused attention": dict(
        # tolerances: the dense pass computes its softmax in float32 (up to 2e-9 from the fused float64 pass)
        model=SASRecPPSPRINT, causal=True, batch=_next_item_batch, layers=_sasrecpp_weights, reference_impl="dense",
        config=dict(train_mode="full_sequence", loss_type="BCE", num_negatives=4, attn_dropout_prob=0.0,
                    attention_impl="fused"),
        tolerances=(dict(rtol=1e-7, atol=1e-10), dict(rtol=1e-5, atol=1e-8))),
    "HSTUSPRINT": dict(
        model=HSTUSPRINT, causal=True, batch=_hstu_batch, layers=_hstu_weights,
        config=dict(normalize_all=False, num_negatives=4, attn_dropout_prob=0.3, linear_dropout_prob=0.1,
                    hidden_dropout_prob=0.1, initializer_range=0.5, sprint_ffn_weight=0.0)),
    # the SPRINT paper's HSTU variant: a SwiGLU feed-forward block after each block, its FFN term on
    "HSTUSPRINT, FFN": dict(
        model=HSTUSPRINT, causal=True, batch=_hstu_batch, layers=_hstu_weights,
        config=dict(normalize_all=False, num_negatives=4, attn_dropout_prob=0.3, linear_dropout_prob=0.1,
                    hidden_dropout_prob=0.1, initializer_range=0.5, hstu_ffn=True)),
    "BERT4RecSPRINT": dict(
        model=BERT4RecSPRINT, causal=False, batch=_cloze_batch, layers=_recbole_weights,
        config=dict(attn_dropout_prob=0.3, hidden_dropout_prob=0.1, MASK_ITEM_SEQ="Mask_item_id_list",
                    POS_ITEMS="Pos_item_id", NEG_ITEMS="Neg_item_id", MASK_INDEX="MASK_INDEX")),
}


def build(tiny, name, **overrides):
    case = CASES[name]
    settings = dict(n_layers=N_LAYERS, n_heads=N_HEADS, hidden_size=8, inner_size=16, MAX_ITEM_LIST_LENGTH=8,
                    sprint_temperature=TAU, **WEIGHTS)
    settings.update(case["config"])
    settings.update(overrides)
    config = Config(model=case["model"].__name__, dataset="ml-100k", config_dict=tiny(**settings))
    torch.manual_seed(0)
    return case["model"](config, StubDataset()).double().train()


def masks(name, model, interaction):
    """``(queries, keys)`` ``[B, n]`` bool per the spec: valid queries; valid keys (BERT4Rec: not [MASK])."""
    if name == "BERT4RecSPRINT":
        item_seq = interaction["Mask_item_id_list"]
        return item_seq != 0, (item_seq != 0) & (item_seq != MASK)
    item_seq = interaction["item_id_list"]
    return item_seq != 0, item_seq != 0


# -- the reference ---------------------------------------------------------------------------------------
def reference_sigma(weight, start):
    """``(sigma, new v)``: one power-iteration step from ``start`` (detached), autograd through the iterate."""
    w = weight.double()
    v = start.detach().double()
    u = w @ v
    u = u / (u.norm() + 1e-12)
    v = w.t() @ u
    v = v / (v.norm() + 1e-12)
    return (w @ v).norm(), v.detach()


def reference_soft_max(probs, queries, keys, causal, tau):
    """``[S_h for h]`` of one layer: one soft maximum per head over every valid (sequence, key column)."""
    batch, heads, n, _ = probs.shape
    soft_max = []
    for h in range(heads):
        columns = []
        for b in range(batch):
            for j in range(n):
                if not keys[b, j]:
                    continue  # padding (and BERT4Rec's [MASK]) key columns are left out
                rows = [i for i in range(n) if queries[b, i] and (not causal or j <= i)]
                columns.append(sum(probs[b, h, i, j] for i in rows))
        soft_max.append(torch.logsumexp(tau * torch.stack(columns), 0) / tau)
    return soft_max


def reference_terms(layers, embedding, probs, queries, keys, causal, state, weights, tau):
    """``(attn, ffn, emb)`` weighted, by the spec's formulas; ``state`` (start vectors) is advanced in place."""
    n_layers = len(layers)
    attn_terms, ffn_terms = [], []
    for index, (w_value, w_output, w_up, w_down) in enumerate(layers):
        soft_max = reference_soft_max(probs[index], queries, keys, causal, tau)
        head_rows = w_value.size(0) // len(soft_max)
        radicand = 0
        for h, s_h in enumerate(soft_max):
            sigma_v, state[("value", index, h)] = reference_sigma(
                w_value[h * head_rows : (h + 1) * head_rows], state[("value", index, h)])
            radicand = radicand + s_h * sigma_v**2
        assert radicand > 0  # the regular branch (the plugin clamps a non-positive radicand)
        sigma_o, state[("output", index)] = reference_sigma(w_output, state[("output", index)])
        attn_terms.append(torch.log1p(torch.sqrt(radicand) * sigma_o))
        if weights["sprint_ffn_weight"] > 0:
            sigma_up, state[("ffn_in", index)] = reference_sigma(w_up, state[("ffn_in", index)])
            sigma_down, state[("ffn_out", index)] = reference_sigma(w_down, state[("ffn_out", index)])
            ffn_terms.append(torch.log1p(sigma_up * sigma_down))
    sigma_e, state["embedding"] = reference_sigma(embedding, state["embedding"])
    attn = weights["sprint_attn_weight"] * sum(attn_terms) / n_layers
    ffn = weights["sprint_ffn_weight"] * sum(ffn_terms) / n_layers if ffn_terms else torch.zeros(())
    emb = weights["sprint_emb_weight"] * torch.log1p(sigma_e)
    return attn, ffn, emb


def initial_state(model, n_layers, n_heads):
    """The model's stored start vectors (state-dict layout: value rows are layer-major, head-minor)."""
    state = {"embedding": model.sprint.embedding.v[0].clone()}
    for index in range(n_layers):
        for h in range(n_heads):
            state[("value", index, h)] = model.sprint.value.v[index * n_heads + h].clone()
        state[("output", index)] = model.sprint.output.v[index].clone()
        if hasattr(model.sprint, "ffn_in"):
            state[("ffn_in", index)] = model.sprint.ffn_in.v[index].clone()
            state[("ffn_out", index)] = model.sprint.ffn_out.v[index].clone()
    return state


def set_attention_impl(model, impl):
    """SASRecPP's attention implementation switched to ``impl`` (``None``: unchanged); returns the previous one."""
    previous = getattr(model, "attention_impl", None)
    if impl is not None:
        model.attention_impl = impl
        for layer in model.layers:
            layer.attention.attention_impl = impl
    return previous


def _check_applied_to_v(name, probs, value_out, output_in):
    """The captured matrix is the one multiplied with V: rebuild the input of what follows from it."""
    batch, heads, n, _ = probs.shape
    if name.startswith("HSTUSPRINT"):  # uvqk output -> SiLU -> U, V, Q, K; what follows is linear_dropout(U * LN(P V))
        u, v, _, _ = F.silu(value_out).chunk(4, dim=-1)
        v = v.reshape(batch, n, heads, -1)
        attn = torch.einsum("bhij,bjhd->bihd", probs, v).reshape(batch, n, -1)
        rebuilt = u * F.layer_norm(attn, (attn.size(-1),), eps=1e-6)
    else:  # value projection output [B, n, H*d_v] -> heads; what follows is W_O's input, the merged heads
        v = value_out.reshape(batch, n, heads, -1).transpose(1, 2)
        rebuilt = torch.matmul(probs, v).transpose(1, 2).reshape(batch, n, -1)
    assert torch.allclose(rebuilt, output_in, rtol=1e-9, atol=1e-12), name


def compare_with_reference(tiny, name, steps=2, lr=0.5, **overrides):
    """Train ``steps`` SGD steps; at each, the plugin's terms and gradients must equal the reference's."""
    model = build(tiny, name, **overrides)
    case = CASES[name]
    settings = {**WEIGHTS, "sprint_temperature": TAU, **case["config"], **overrides}  # as build() configures
    weights = {key: settings[key] for key in WEIGHTS}
    tau = settings["sprint_temperature"]
    parameters = dict(model.named_parameters())
    modules = list(case["layers"](model))
    state = initial_state(model, N_LAYERS, N_HEADS)
    interaction = Interaction(case["batch"]())
    queries, keys = masks(name, model, interaction)
    for step in range(steps):
        # the plugin: the training loss with SPRINT, and the terms the regulariser returns
        returned = []
        handle = model.sprint.register_forward_hook(lambda module, inputs, output: returned.append(output))
        seed_everything(step)
        loss = model.calculate_loss(interaction)
        handle.remove()
        plugin_grads = torch.autograd.grad(loss, list(parameters.values()), allow_unused=True)
        (plugin_terms,) = returned

        # the reference: the same forward pass (same seed: same dropout masks and negatives) without SPRINT's
        # regulariser, the attention matrices captured from the backbone, the terms by the spec's formulas
        captured = {"probs": [], "value": [], "next": []}
        handles = []
        for probs_module, value_module, _, output_module, _, _ in modules:
            handles.append(probs_module.register_forward_hook(lambda m, i, o: captured["probs"].append(o)))
            handles.append(value_module.register_forward_hook(lambda m, i, o: captured["value"].append(o)))
        for layer in (model.layers if name.startswith("HSTUSPRINT") else []):
            handles.append(layer.linear_dropout.register_forward_pre_hook(lambda m, i: captured["next"].append(i[0])))
        for _, _, _, output_module, _, _ in (modules if not name.startswith("HSTUSPRINT") else []):
            handles.append(output_module.register_forward_pre_hook(lambda m, i: captured["next"].append(i[0])))
        model.sprint.eval()  # the regulariser off (no hooks, no terms); the backbone stays in training mode
        impl = set_attention_impl(model, case.get("reference_impl"))
        seed_everything(step)
        rec = model.calculate_loss(interaction)
        set_attention_impl(model, impl)
        model.sprint.train()
        for handle in handles:
            handle.remove()
        assert len(captured["probs"]) == len(modules)
        for index in range(len(modules)):
            _check_applied_to_v(name, captured["probs"][index], captured["value"][index], captured["next"][index])
        layers = [(w_value, output_module.weight, w_up, w_down)
                  for _, _, w_value, output_module, w_up, w_down in modules]
        reference = reference_terms(layers, model.item_embedding.weight, captured["probs"], queries, keys,
                                    case["causal"], state, weights, tau)
        total = rec + sum(reference)
        reference_grads = torch.autograd.grad(total, list(parameters.values()), allow_unused=True)

        value_tol, grad_tol = case.get("tolerances", (VALUE_TOL, GRAD_TOL))
        for part, mine, theirs in zip(("attn", "ffn", "emb"), plugin_terms, reference):
            assert mine.dtype == torch.float64
            assert torch.allclose(mine, theirs, **value_tol), \
                f"plugin != reference: {part} value at step {step}: {mine.item()!r} vs {theirs.item()!r}"
        assert torch.allclose(loss, total, **value_tol), f"plugin != reference: loss at step {step}"
        for parameter, mine, theirs in zip(parameters, plugin_grads, reference_grads):
            assert (mine is None) == (theirs is None), f"plugin != reference: gradient of {parameter} is None in one"
            if mine is not None:
                assert torch.allclose(mine, theirs, **grad_tol), (
                    f"plugin != reference: gradient of {parameter} at step {step}, "
                    f"max difference {(mine - theirs).abs().max().item():.3g}")
        with torch.no_grad():  # move the weights (with the plugin's gradients): the next step starts elsewhere
            for value, grad in zip(parameters.values(), plugin_grads):
                if grad is not None:
                    value -= lr * grad
    return model


@pytest.mark.parametrize("name", list(CASES))
def test_terms_and_gradients_equal_the_reference(tiny, name):
    with float64_default():
        compare_with_reference(tiny, name)


# -- the comparison fails for a wrong formula -------------------------------------------------------------
def _wrap(target, attribute, make):
    """``(target, attribute, replacement)`` where the replacement wraps the original."""
    return target, attribute, make(getattr(target, attribute))


def _hard_max(original):
    def hard_max(column_sums, key_mask, temperature):  # max instead of the soft maximum
        scaled = column_sums.double().masked_fill(~key_mask[:, None, :], float("-inf"))
        return scaled.amax(dim=(-3, -1))
    return hard_max


def _per_sequence_soft_max(original):
    def per_sequence(column_sums, key_mask, temperature):  # one soft max per sequence, averaged over sequences
        scaled = (temperature * column_sums.double()).masked_fill(~key_mask[:, None, :], float("-inf"))
        return (torch.logsumexp(scaled, dim=-1) / temperature).mean(-2)
    return per_sequence


def _power_iteration_without_grad(original):
    def no_grad_iteration(weight, v, n_iters, eps=1e-12):  # torch.nn.utils.spectral_norm's semantics
        with torch.no_grad():
            _, u, v = original(weight, v, n_iters, eps)
        return torch.linalg.vector_norm(torch.bmm(weight, v.unsqueeze(-1)).squeeze(-1), dim=-1), u, v
    return no_grad_iteration


def _pre_dropout_hook(original):
    def attention_hook(self, index):  # reads the attention matrix before dropout (the module's input)
        def hook(module, inputs, probs):
            if self.training and self._query_weights is not None:
                self._column_sums[index] = sprint_module.attention_column_sums(inputs[0], self._query_weights)
        return hook
    return attention_hook


def _gate_instead_of_up(original):
    def sprint_blocks(self):
        blocks = original(self)
        for block, layer in zip(blocks, self.layers):
            block.ffn_in_module = layer.feed_forward.gate_proj
        return blocks
    return sprint_blocks


def _unsquared_value_norms(original):
    def attention_term(soft_max, value_norms, output_norms, eps=1e-12):  # the plugin's formula, sigma(W_V) not squared
        return original(soft_max, value_norms.sqrt(), output_norms, eps)
    return attention_term


Regularizer, Estimator = sprint_module.SPRINTRegularizer, sprint_module.SpectralNormEstimator
MUTANTS = {  # name: (model, a function returning (target, attribute, replacement), first check to fail)
    "abs() of the column sums": ("HSTUSPRINT", lambda: _wrap(
        sprint_module, "soft_max_columns", lambda f: lambda c, k, t: f(c.abs(), k, t)), "attn value"),
    "sum over layers instead of mean (attn)": ("SASRecPPSPRINT", lambda: _wrap(
        sprint_module, "attention_term", lambda f: lambda s, v, o: f(s, v, o) * s.shape[0]), "attn value"),
    "sum over layers instead of mean (ffn)": ("SASRecPPSPRINT", lambda: _wrap(
        sprint_module, "ffn_term", lambda f: lambda i, o: f(i, o) * i.shape[0]), "ffn value"),
    "max instead of logsumexp": ("SASRecPPSPRINT", lambda: _wrap(sprint_module, "soft_max_columns", _hard_max),
                                 "attn value"),
    "one soft max per sequence": ("SASRecSPRINT", lambda: _wrap(sprint_module, "soft_max_columns",
                                                               _per_sequence_soft_max), "attn value"),
    "tau ignored (1)": ("SASRecPPSPRINT", lambda: _wrap(
        sprint_module, "soft_max_columns", lambda f: lambda c, k, t: f(c, k, 1.0)), "attn value"),
    "padding query rows counted": ("SASRecSPRINT", lambda: _wrap(
        sprint_module, "attention_column_sums", lambda f: lambda p, q: f(p, torch.ones_like(q))), "attn value"),
    "padding key columns counted": ("SASRecPPSPRINT", lambda: _wrap(
        sprint_module, "soft_max_columns", lambda f: lambda c, k, t: f(c, torch.ones_like(k), t)), "attn value"),
    "[MASK] key columns counted": ("BERT4RecSPRINT", lambda: _wrap(
        BERT4RecSPRINT, "sprint_masks", lambda f: lambda self, s: ((s != 0), (s != 0))), "attn value"),
    "pre-dropout attention": ("SASRecSPRINT", lambda: _wrap(Regularizer, "_attention_hook", _pre_dropout_hook),
                              "attn value"),
    # SASRec++'s dense attention: P V and the column sums from one autograd node, whose backward folds the sums'
    # gradient into dP; with that part of dP left out, the gradients of W_Q, W_K (through P) differ
    "column sums' gradient left out of dP": ("SASRecPPSPRINT", lambda: _wrap(
        layers_module, "attend_with_column_sums", lambda f: lambda p, v, q: (
            f(p, v, q)[0], sprint_module.attention_column_sums(p.detach(), q))), "gradient of"),
    "sigma(W_V) not squared": ("SASRecSPRINT", lambda: _wrap(sprint_module, "attention_term", _unsquared_value_norms),
                               "attn value"),
    "W_gate instead of W_up": ("SASRecPPSPRINT", lambda: _wrap(SASRecPPSPRINT, "sprint_blocks", _gate_instead_of_up),
                               "ffn value"),
    "log instead of log1p (emb)": ("SASRecPPSPRINT", lambda: _wrap(
        sprint_module, "embedding_term", lambda f: lambda norm: torch.log(norm.reshape(()))), "emb value"),
    "power iteration under no_grad": ("SASRecPPSPRINT", lambda: _wrap(
        sprint_module, "power_iteration", _power_iteration_without_grad), "gradient of"),
    "no warm start": ("SASRecPPSPRINT", lambda: _wrap(Estimator, "store", lambda f: lambda self, u, v: None),
                      "attn value at step 1"),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_comparison_fails_for_a_wrong_formula(tiny, monkeypatch, mutant):
    name, patch, first_failure = MUTANTS[mutant]
    monkeypatch.setattr(*patch())
    with float64_default(), pytest.raises(AssertionError, match=f"plugin != reference: {first_failure}"):
        compare_with_reference(tiny, name)


def test_a_float64_model_runs_its_power_iterations_in_float64():
    """``model.double()`` makes the start vectors float64: the iteration then runs in float64 (it raised a dtype
    error before, as it cast the weights to float32); float32 and half weights still iterate in float32."""
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(1, 6, 4, generator=generator, dtype=torch.float64)
    estimator = sprint_module.SpectralNormEstimator(1, 6, 4, n_iters=300, generator=generator).double()
    sigma = estimator(weight)
    assert sigma.dtype == torch.float64
    assert torch.allclose(sigma, torch.linalg.matrix_norm(weight, 2), rtol=1e-12)
    for dtype in (torch.float32, torch.float16):
        assert estimator.to(dtype)(weight.to(dtype)).dtype == torch.float32


# -- the direction of the attention term --------------------------------------------------------------------
def _attention_statistics(name, model, interaction):
    """``(S [L, H], max column sum [L, H])`` of a training forward pass without SPRINT (reference formulas)."""
    captured = []
    handles = [layer[0].register_forward_hook(lambda m, i, o: captured.append(o.detach()))
               for layer in CASES[name]["layers"](model)]
    model.sprint.eval()
    impl = set_attention_impl(model, CASES[name].get("reference_impl"))
    with torch.no_grad():
        model.calculate_loss(interaction)
    set_attention_impl(model, impl)
    model.sprint.train()
    for handle in handles:
        handle.remove()
    queries, keys = masks(name, model, interaction)
    soft, hard = [], []
    for probs in captured:
        soft.append(torch.stack(reference_soft_max(probs, queries, keys, CASES[name]["causal"], TAU)))
        n = probs.size(-1)
        kept = probs * torch.tril(torch.ones(n, n)) if CASES[name]["causal"] else probs
        column_sums = torch.einsum("bhij,bi->bhj", kept, queries.double())  # [B, H, n]
        hard.append(column_sums.masked_fill(~keys[:, None, :], float("-inf")).amax(dim=(0, 2)))
    return torch.stack(soft), torch.stack(hard)


DIRECTION_STEP = 1e-2  # SGD learning rate of the step below


@pytest.mark.parametrize("name", list(CASES))
def test_a_step_on_the_attention_term_lowers_the_largest_column_sums(tiny, name):
    """One SGD step on lambda_attn * attn alone (no recommendation loss, no dropout) lowers every head's soft
    maximum S~ and hard maximum of the column sums, in every layer: the term pushes attention away from the
    most-attended keys. Weights drawn with std 0.3, so that the attention is far from uniform; at RecBole's
    init (std 0.02: near-uniform attention, small weights) the same step changes S~ by only ~1e-7 (up in some
    heads) since the term's gradient then mostly shrinks the weights' spectral norms."""
    off = dict(attn_dropout_prob=0.0, hidden_dropout_prob=0.0, initializer_range=0.3, sprint_attn_weight=1.0,
               sprint_ffn_weight=0.0, sprint_emb_weight=0.0)
    if name.startswith("HSTUSPRINT"):
        off["linear_dropout_prob"] = 0.0
    with float64_default():
        model = build(tiny, name, **off)
        interaction = Interaction(CASES[name]["batch"]())
        soft_before, hard_before = _attention_statistics(name, model, interaction)
        returned = []
        model.sprint.register_forward_hook(lambda module, inputs, output: returned.append(output))
        seed_everything(0)
        model.calculate_loss(interaction)  # the rec loss is not used: only the attention term
        ((attn, ffn, emb),) = returned
        assert ffn == 0 and emb == 0
        parameters = list(model.parameters())
        grads = torch.autograd.grad(attn, parameters, allow_unused=True)
        with torch.no_grad():
            for parameter, grad in zip(parameters, grads):
                if grad is not None:
                    parameter -= DIRECTION_STEP * grad
        soft_after, hard_after = _attention_statistics(name, model, interaction)
    assert (soft_after < soft_before).all(), (soft_before, soft_after)
    assert (hard_after < hard_before).all(), (hard_before, hard_after)
    # ...by a margin the comparison can see (the same step with the sign flipped raises them)
    assert (soft_before - soft_after).min() > 1e-6

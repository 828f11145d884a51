"""The SPRINT regulariser's pieces (recbole_sprint/model/sprint.py) against hand computations."""

import math

import pytest
import torch
from torch import nn

from recbole_sprint.model.sprint import (
    SPRINTRegularizer,
    SpectralNormEstimator,
    SprintBlock,
    attend_with_column_sums,
    attention_block_term,
    attention_column_sums,
    check_sprint_config,
    padded_columns,
    power_iteration,
    power_iteration_reference,
    soft_max_columns,
)


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def test_power_iteration_reaches_the_spectral_norm():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(5, 12, 7, generator=generator, dtype=torch.float64)
    v = _unit(torch.randn(5, 7, generator=generator, dtype=torch.float64))
    sigma, u, v = power_iteration(weights, v, n_iters=200)
    exact = torch.linalg.matrix_norm(weights, 2)
    assert torch.allclose(sigma, exact, atol=1e-3)
    # u, v are the top singular vectors: W v = sigma u
    assert torch.allclose(torch.bmm(weights, v.unsqueeze(-1)).squeeze(-1), sigma[:, None] * u, atol=1e-3)


def test_power_iteration_equals_the_textbook_steps_in_value_and_gradient():
    """Skipping u's normalisation (its scale cancels in v's) changes neither sigma nor its gradient."""

    def textbook(weight, v, n_iters):
        for _ in range(n_iters):
            u = torch.nn.functional.normalize(torch.bmm(weight, v.unsqueeze(-1)).squeeze(-1), dim=-1)
            v = torch.nn.functional.normalize(torch.bmm(weight.transpose(1, 2), u.unsqueeze(-1)).squeeze(-1), dim=-1)
        return torch.linalg.vector_norm(torch.bmm(weight, v.unsqueeze(-1)).squeeze(-1), dim=-1), v

    generator = torch.Generator().manual_seed(3)
    v0 = _unit(torch.randn(4, 6, generator=generator, dtype=torch.float64))
    for n_iters in (1, 3):
        weight = torch.randn(4, 9, 6, generator=generator, dtype=torch.float64, requires_grad=True)
        sigma, u, v = power_iteration(weight, v0, n_iters)
        (grad,) = torch.autograd.grad((sigma * torch.arange(1.0, 5.0, dtype=torch.float64)).sum(), weight)
        expected_sigma, expected_v = textbook(weight, v0, n_iters)
        (expected_grad,) = torch.autograd.grad((expected_sigma * torch.arange(1.0, 5.0, dtype=torch.float64)).sum(),
                                               weight)
        assert torch.allclose(sigma, expected_sigma, atol=1e-12) and torch.allclose(v, expected_v, atol=1e-12)
        assert torch.allclose(grad, expected_grad, atol=1e-10)
        assert not u.requires_grad and torch.allclose(u.norm(dim=-1), torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize("n_iters", [1, 2, 4])
@pytest.mark.parametrize("shape", [(3, 9, 5), (2, 4, 11)])
def test_power_iteration_backward_equals_autograd_through_the_iterates(n_iters, shape):
    """The hand-written backward against autograd through the same steps, float64: a wide and a tall batch, with a
    zero matrix in it (sigma 0: no gradient, as vector_norm's) and a start vector W maps to almost 0 (the normalising
    norm clamped at eps); the start vectors' gradient too; and torch's numerical gradcheck."""
    generator = torch.Generator().manual_seed(n_iters)
    weight = torch.randn(*shape, generator=generator, dtype=torch.float64)
    weight[1] = 0.0
    v0 = _unit(torch.randn(shape[0], shape[2], generator=generator, dtype=torch.float64))
    mix = torch.randn(shape[0], generator=generator, dtype=torch.float64)
    results = []
    for implementation in (power_iteration, power_iteration_reference):
        w, v = weight.clone().requires_grad_(), v0.clone().requires_grad_()
        sigma, *vectors = implementation(w, v, n_iters)
        results.append((sigma, vectors[-1], *torch.autograd.grad((sigma * mix).sum(), (w, v), allow_unused=True)))
    (sigma, v_last, grad_w, grad_v), (sigma_ref, v_ref, grad_w_ref, grad_v_ref) = results
    assert torch.allclose(sigma, sigma_ref, atol=1e-13) and torch.allclose(v_last, v_ref, atol=1e-13)
    assert torch.allclose(grad_w, grad_w_ref, atol=1e-12) and torch.allclose(grad_v, grad_v_ref, atol=1e-12)
    assert sigma[1] == 0 and grad_w[1].abs().max() == 0 and grad_w[0].abs().max() > 0
    clamped = torch.zeros(1, 3, 2, dtype=torch.float64)
    clamped[0, 0, 0] = 1e-8  # |W^T W v| = 1e-16 at most: below eps = 1e-12, so v = z / eps
    start = _unit(torch.ones(1, 2, dtype=torch.float64))
    grads = [torch.autograd.grad(implementation(w, start, n_iters)[0].sum(), w)[0]
             for implementation in (power_iteration, power_iteration_reference)
             for w in [clamped.clone().requires_grad_()]]
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=0) and grads[0].abs().max() > 0
    assert torch.autograd.gradcheck(lambda w, v: power_iteration(w, v, n_iters)[0],
                                    (torch.randn(*shape, generator=generator, dtype=torch.float64,
                                                 requires_grad=True), v0.clone().requires_grad_()))
    _, u, v = power_iteration(weight.clone().requires_grad_(), v0, n_iters)
    assert not u.requires_grad and not v.requires_grad


def test_estimator_buffers_persist_and_warm_start():
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(1, 20, 10, generator=generator)
    estimator = SpectralNormEstimator(1, 20, 10, n_iters=1, generator=torch.Generator().manual_seed(2))
    estimator.train()
    start_v = estimator.v.clone()
    estimates = [estimator(weight).item() for _ in range(60)]
    exact = torch.linalg.matrix_norm(weight[0], 2).item()
    assert not torch.equal(estimator.v, start_v)  # the buffer moved: the next step starts from it
    assert abs(estimates[-1] - exact) < 1e-3  # one step per call, warm-started: converges across calls
    assert abs(estimates[0] - exact) > abs(estimates[-1] - exact)
    # eval mode: the estimate is returned, the buffers stay
    estimator.eval()
    frozen = estimator.v.clone()
    estimator(weight)
    assert torch.equal(estimator.v, frozen)
    # the buffers are part of the state dict (strict loading of a checkpoint works)
    fresh = SpectralNormEstimator(1, 20, 10, n_iters=1, generator=torch.Generator().manual_seed(3))
    fresh.load_state_dict(estimator.state_dict(), strict=True)
    assert torch.equal(fresh.v, estimator.v) and torch.equal(fresh.u, estimator.u)


def test_column_sums_zero_padding_query_rows():
    probs = torch.arange(2 * 1 * 3 * 3, dtype=torch.float64).reshape(2, 1, 3, 3)
    query_mask = torch.tensor([[True, True, False], [True, False, False]])
    sums = attention_column_sums(probs, query_mask)
    expected = torch.stack([probs[0, 0, :2].sum(0), probs[1, 0, :1].sum(0)])[:, None, :]
    assert torch.allclose(sums, expected)


@pytest.mark.parametrize("pad", [0, 3])
def test_padded_columns_is_matrix_column_then_zeros(pad):
    """The folded backward's operand ``[M | c | 0]``: exact values, the matrix's dtype, zeros in the pad columns
    (written into an uninitialised tensor, so a missed slice would leave garbage there)."""
    matrix = torch.arange(2 * 3 * 4 * 5, dtype=torch.bfloat16).reshape(2, 3, 4, 5).transpose(1, 2)  # not contiguous
    column = torch.full((2, 4, 3, 1), 0.5, dtype=torch.float32)
    for _ in range(3):  # reuse of freed memory: the pad must be zeroed every time
        out = padded_columns(matrix, column, pad)
        assert out.shape == (2, 4, 3, 5 + 1 + pad) and out.dtype == torch.bfloat16
        assert torch.equal(out[..., :5], matrix)
        assert torch.equal(out[..., 5], torch.full((2, 4, 3), 0.5, dtype=torch.bfloat16))
        assert torch.equal(out[..., 6:], torch.zeros(2, 4, 3, pad, dtype=torch.bfloat16))
        torch.full_like(out, float("nan"))  # leave NaNs in the allocator's free blocks


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("upstream", ["both", "output only", "sums only"])
def test_attend_with_column_sums_equals_matmul_beside_attention_column_sums(dtype, tolerance, upstream):
    """One autograd node for P V and the column sums: the values and the gradients of P and V of the two separate
    operations, for gradients on both outputs or on one (head size 5: the padded width of the folded product)."""
    generator = torch.Generator().manual_seed(3)
    probs = torch.rand(2, 3, 6, 6, generator=generator, dtype=torch.float64).softmax(-1)
    value = torch.randn(2, 3, 6, 5, generator=generator, dtype=torch.float64)
    query_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    grad_out = torch.randn(2, 3, 6, 5, generator=generator, dtype=torch.float64)
    grad_sums = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64)

    def run(fused):
        p, v = (t.to(dtype).clone().requires_grad_() for t in (probs, value))  # new leaves each run
        if fused:
            out, sums = attend_with_column_sums(p, v, query_mask)
        else:
            out, sums = torch.matmul(p, v), attention_column_sums(p, query_mask)
        loss = 0
        if upstream != "sums only":
            loss = loss + (out.double() * grad_out).sum()
        if upstream != "output only":
            loss = loss + (sums.double() * grad_sums).sum()
        loss.backward()
        grad_v = torch.zeros_like(v) if v.grad is None else v.grad  # V unused: None here, zeros in one node
        return [t.detach().double().clone() for t in (out, sums, p.grad, grad_v)]

    for got, expected in zip(run(True), run(False)):
        assert torch.allclose(got, expected, atol=tolerance, rtol=tolerance)
    out, sums, grad_p, _ = run(True)
    # the padded query rows of the second sequence are left out of its sums; dP holds the rank-one term w g^T
    assert torch.allclose(sums[1], probs[1, :, :4].sum(1).to(dtype).double(), atol=tolerance)
    if upstream == "sums only":
        weights = query_mask.double()[:, None, :, None]
        assert torch.allclose(grad_p, (weights * grad_sums[:, :, None, :]).to(dtype).double(), atol=tolerance)


def test_soft_max_bounds_and_value():
    generator = torch.Generator().manual_seed(4)
    sums = torch.rand(3, 2, 5, generator=generator, dtype=torch.float64) * 3
    key_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    for tau in (0.5, 1.0, 4.0, 50.0):
        soft = soft_max_columns(sums, key_mask, tau)
        for h in range(2):
            valid = sums[:, h][key_mask]  # M = 9 columns
            hard = valid.max()
            assert hard - 1e-9 <= soft[h] <= hard + math.log(valid.numel()) / tau + 1e-9
            assert torch.isclose(soft[h], torch.logsumexp(tau * valid, 0) / tau)


def test_padding_rows_and_columns_change_nothing():
    """Append padding to every sequence (as RecBole's right padding does): the soft maximum is unchanged."""
    torch.manual_seed(5)
    batch, heads, length, pad = 3, 2, 4, 3
    lengths = torch.tensor([4, 2, 3])
    valid = torch.arange(length)[None, :] < lengths[:, None]  # [B, n]
    scores = torch.randn(batch, heads, length, length)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    scores = scores.masked_fill(~(causal & valid[:, None, None, :]), -10000.0)
    probs = scores.softmax(-1)
    reference = soft_max_columns(attention_column_sums(probs, valid), valid, 4.0)

    # the same attention, padded with `pad` more positions; padding queries attend to anything
    padded_scores = torch.randn(batch, heads, length + pad, length + pad)
    padded_scores[:, :, :length, :length] = scores
    padded_valid = torch.cat([valid, torch.zeros(batch, pad, dtype=torch.bool)], 1)
    padded_scores[:, :, :length, length:] = -10000.0  # valid queries never see padding keys
    padded = soft_max_columns(attention_column_sums(padded_scores.softmax(-1), padded_valid), padded_valid, 4.0)
    assert torch.allclose(reference, padded, atol=1e-6)


def test_attention_term_gradient_matches_finite_differences():
    """The whole attention path, from probabilities and weights to the block term, in float64."""
    torch.manual_seed(6)
    heads, d_head, d = 2, 3, 6
    probs = torch.rand(2, heads, 4, 4, dtype=torch.float64).softmax(-1).requires_grad_()
    w_value = torch.randn(heads * d_head, d, dtype=torch.float64, requires_grad=True)
    w_out = torch.randn(d, heads * d_head, dtype=torch.float64, requires_grad=True)
    query_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    v_start = _unit(torch.randn(heads, d, dtype=torch.float64))
    o_start = _unit(torch.randn(1, heads * d_head, dtype=torch.float64))

    def term(p, wv, wo):
        soft = soft_max_columns(attention_column_sums(p, query_mask), query_mask, 4.0).double()
        sigma_v, _, _ = power_iteration(wv.reshape(heads, d_head, d), v_start, 3)
        sigma_o, _, _ = power_iteration(wo.unsqueeze(0), o_start, 3)
        return attention_block_term(soft, sigma_v, sigma_o)

    assert torch.autograd.gradcheck(term, (probs, w_value, w_out), eps=1e-6, atol=1e-5)


def test_attention_term_hand_value():
    soft = torch.tensor([2.0, 0.5])
    value_norms = torch.tensor([3.0, 1.0])
    output_norm = torch.tensor([0.5])
    expected = math.log1p(math.sqrt(2.0 * 9.0 + 0.5 * 1.0) * 0.5)
    assert math.isclose(attention_block_term(soft, value_norms, output_norm).item(), expected, rel_tol=1e-6)
    # a non-positive radicand (possible with HSTU's signed attention) gives log1p(~0), not NaN
    negative = attention_block_term(torch.tensor([-1.0]), torch.tensor([1.0]), torch.tensor([1.0]))
    assert torch.isfinite(negative) and negative.item() < 1e-5


def _config(**overrides):
    config = {
        "sprint_attn_weight": 2.5,
        "sprint_ffn_weight": 0.01,
        "sprint_emb_weight": 0.1,
        "sprint_temperature": 4.0,
        "sprint_power_iters": 1,
        "sprint_compile": "none",
    }
    config.update(overrides)
    return config


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("sprint_attn_weight", -1.0, "sprint_attn_weight must be a number >= 0"),
        ("sprint_ffn_weight", -0.1, "sprint_ffn_weight must be a number >= 0"),
        ("sprint_emb_weight", "big", "sprint_emb_weight must be a number >= 0"),
        ("sprint_temperature", 0.0, "sprint_temperature must be a number > 0"),
        ("sprint_temperature", -2, "sprint_temperature must be a number > 0"),
        ("sprint_attn_weight", float("nan"), r"sprint_attn_weight must be a number >= 0 \(finite"),  # nan < 0 is False
        ("sprint_ffn_weight", float("inf"), r"sprint_ffn_weight must be a number >= 0 \(finite"),
        ("sprint_emb_weight", float("nan"), r"sprint_emb_weight must be a number >= 0 \(finite"),
        ("sprint_temperature", float("nan"), r"sprint_temperature must be a number > 0 \(finite\)"),
        ("sprint_temperature", float("inf"), r"sprint_temperature must be a number > 0 \(finite\)"),
        ("sprint_power_iters", 0, "sprint_power_iters must be an integer >= 1"),
        ("sprint_compile", "reduce-overhead",
         "sprint_compile must be one of none, default, aot_eager, cuda_graph, inductor_cuda_graph, got"),
        ("sprint_power_iters", 1.5, "sprint_power_iters must be an integer >= 1"),
        ("sprint_every", 0, r"sprint_every must be an integer >= 1 \(1: every training step"),
        ("sprint_every", 2.0, "sprint_every must be an integer >= 1"),
        ("sprint_every", True, "sprint_every must be an integer >= 1"),
        ("sprint_in_backbone_graph", "no", "sprint_in_backbone_graph must be True or False, got 'no'"),
    ],
)
def test_rejected_config_values(key, value, message):
    with pytest.raises(ValueError, match=message):
        check_sprint_config(_config(**{key: value}))


class _Block(nn.Module):
    """A one-head attention block small enough to check the regulariser's total by hand."""

    def __init__(self, d):
        super().__init__()
        self.value = nn.Linear(d, d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.probs = nn.Identity()
        self.ffn_in = nn.Linear(d, 2 * d, bias=False)
        self.ffn_out = nn.Linear(2 * d, d, bias=False)


def test_regularizer_total_matches_exact_norms_and_is_off_in_eval():
    torch.manual_seed(7)
    d = 4
    layers = [_Block(d), _Block(d)]
    embedding = nn.Embedding(6, d)
    blocks = [SprintBlock(b.probs, b.value, b.out, 1, ffn_in_module=b.ffn_in, ffn_out_module=b.ffn_out) for b in layers]
    regularizer = SPRINTRegularizer(_config(sprint_power_iters=300), blocks, embedding).train()

    valid = torch.tensor([[True, True, False]])
    probs = torch.tensor([[[[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]]])
    regularizer.observe(valid, valid)
    for block in layers:
        block.probs(probs)  # the hook reads the matrix "applied to V"
    rec = torch.tensor(1.0)
    total = regularizer.add_to(rec)
    parts = regularizer.pop_epoch_parts()
    assert list(parts) == ["rec", "sprint_attn", "sprint_ffn", "sprint_emb"] and parts["rec"] == 1.0
    assert math.isclose(total.item(), sum(parts.values()), rel_tol=1e-6)

    def norm(w):
        return torch.linalg.matrix_norm(w, 2).item()

    soft = math.log(math.exp(4 * 1.5) + math.exp(4 * 0.5)) / 4  # column sums of the 2 valid rows: 1.5, 0.5
    attn = sum(math.log1p(math.sqrt(soft) * norm(b.value.weight) * norm(b.out.weight)) for b in layers) / 2
    ffn = sum(math.log1p(norm(b.ffn_in.weight) * norm(b.ffn_out.weight)) for b in layers) / 2
    emb = math.log1p(norm(embedding.weight))
    assert math.isclose(parts["sprint_attn"], 2.5 * attn, rel_tol=1e-4)
    assert math.isclose(parts["sprint_ffn"], 0.01 * ffn, rel_tol=1e-4)
    assert math.isclose(parts["sprint_emb"], 0.1 * emb, rel_tol=1e-4)
    assert regularizer.pop_epoch_parts() is None  # consumed

    regularizer.eval()
    assert regularizer.add_to(rec) is rec


def test_missing_attention_matrix_is_a_clear_error():
    block = _Block(4)
    sprint_block = SprintBlock(block.probs, block.value, block.out, 1, None, block.ffn_in, block.ffn_out)
    regularizer = SPRINTRegularizer(_config(), [sprint_block], nn.Embedding(5, 4)).train()
    with pytest.raises(RuntimeError, match="saw no attention matrix for layer 0"):
        regularizer.add_to(torch.tensor(0.0))


def test_ffn_weight_without_ffn_is_rejected():
    block = _Block(4)
    no_ffn = SprintBlock(block.probs, block.value, block.out, 1)
    with pytest.raises(ValueError, match="sprint_ffn_weight > 0 but the backbone's blocks have no feed-forward"):
        SPRINTRegularizer(_config(), [no_ffn], nn.Embedding(5, 4))
    SPRINTRegularizer(_config(sprint_ffn_weight=0), [no_ffn], nn.Embedding(5, 4))  # fine without the FFN term


def _two_block_regularizer(seed, **config):
    """``(layers, embedding, regulariser)``: two 4-wide blocks and a 6-item table, in training mode."""
    torch.manual_seed(seed)
    layers = nn.ModuleList([_Block(4), _Block(4)])
    embedding = nn.Embedding(6, 4)
    blocks = [SprintBlock(b.probs, b.value, b.out, 1, ffn_in_module=b.ffn_in, ffn_out_module=b.ffn_out) for b in layers]
    return layers, embedding, SPRINTRegularizer(_config(**config), blocks, embedding).train()


def _three_sgd_steps(compile_mode):
    """Totals, final weights' gradients and power-iteration buffers after 3 SGD steps on the regulariser alone."""
    layers, embedding, regularizer = _two_block_regularizer(11, sprint_compile=compile_mode)
    parameters = list(layers.parameters()) + list(embedding.parameters())
    optimizer = torch.optim.SGD(parameters, lr=0.5)
    totals = []
    for batch in range(3):
        valid = torch.tensor([[True, True, batch > 0], [True, False, False]])
        probs = torch.softmax(torch.randn(2, 1, 3, 3), -1)
        regularizer.observe(valid, valid)
        for block in layers:
            block.probs(probs * 2 * torch.sigmoid(block.value.weight.sum()))  # attention that depends on a weight
        optimizer.zero_grad()
        total = regularizer.add_to(torch.tensor(0.0))
        total.backward()
        optimizer.step()
        totals.append(total.item())
    grads = [p.grad.clone() for p in parameters]
    buffers = [b.clone() for b in regularizer.buffers()]
    return totals, grads, buffers


@pytest.mark.parametrize("compile_mode", ["aot_eager", "default"])
def test_compiled_terms_train_like_the_eager_ones(compile_mode):
    """sprint_compile makes the terms, power iterations included, one graph: the same losses, gradients and
    warm-start buffers step after step. aot_eager only traces; default generates code (CPU: C++ through the
    system compiler), where a buffer written in place before the backward pass gave wrong gradients from the
    first step (the GPU modes are timed by benchmarks/sprint_overhead.py --compile)."""
    eager = _three_sgd_steps("none")
    compiled = _three_sgd_steps(compile_mode)
    assert eager[0] == pytest.approx(compiled[0], rel=1e-5)
    assert len(eager[1]) == len(compiled[1]) == 9 and len(eager[2]) == len(compiled[2]) == 10
    assert all(grad.abs().sum() > 0 for grad in eager[1])
    for a, b in zip(eager[1] + eager[2], compiled[1] + compiled[2]):
        assert torch.allclose(a, b, atol=1e-5)
    assert eager[0][0] != eager[0][2]  # the steps changed the weights (the comparison is not of constants)


def test_compiled_terms_compile_once_for_models_of_one_structure():
    """sprint_compile compiles sprint_terms, whose guards are on numbers and tensor shapes, not on a model's modules: a
    second model of the same structure runs the first one's graph (with guards on the modules' identities every new
    model compiled again, and under fullgraph the ninth of a process failed at torch's recompile limit, 8)."""
    torch._dynamo.reset()
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    with torch._dynamo.config.patch(**{limit: 1}):
        first, second = _three_sgd_steps("aot_eager"), _three_sgd_steps("aot_eager")
    assert first[0] == second[0] and all(torch.equal(a, b) for a, b in zip(first[1], second[1]))


def _steps_with_a_smaller_batch(compile_mode):
    """Totals, final gradients and buffers after 4 SGD steps whose third batch is smaller (a second input shape, then
    the first again)."""
    layers, embedding, regularizer = _two_block_regularizer(11, sprint_compile=compile_mode)
    parameters = list(layers.parameters()) + list(embedding.parameters())
    optimizer = torch.optim.SGD(parameters, lr=0.5)
    totals = []
    for batch in range(4):
        size = 1 if batch == 2 else 2
        valid = torch.tensor([[True, True, batch > 0], [True, False, False]])[:size]
        probs = torch.softmax(torch.randn(size, 1, 3, 3), -1)
        regularizer.observe(valid, valid)
        for block in layers:
            block.probs(probs * 2 * torch.sigmoid(block.value.weight.sum()))
        optimizer.zero_grad()
        total = regularizer.add_to(torch.tensor(0.0))
        total.backward()
        optimizer.step()
        totals.append(total.item())
    return totals, [p.grad.clone() for p in parameters], [b.clone() for b in regularizer.buffers()], parameters


def _assert_same_training(eager, other):
    assert eager[0] == pytest.approx(other[0], rel=1e-6)
    assert len(eager[1]) == len(other[1]) == 9 and len(eager[2]) == len(other[2]) == 10
    for a, b in zip(eager[1] + eager[2], other[1] + other[2]):
        assert torch.allclose(a, b, atol=1e-6)
    assert eager[0][0] != eager[0][3]


def test_cuda_graph_mode_hands_the_terms_to_make_graphed_callables_once_per_input_shape(monkeypatch):
    """sprint_compile: cuda_graph records a module of the terms (tensors in, tensors out) with
    torch.cuda.make_graphed_callables, once per input signature. Without a GPU a stand-in records the calls and
    returns the module itself: the inputs, the start vectors passed in, the vectors taken back and the parameters
    are wired so that training is the eager one. (The recorded graphs against eager, on the GPU:
    benchmarks/sprint_overhead.py --check_graphs.)"""
    import recbole_sprint.model.sprint as sprint_module

    recorded = []

    def stand_in(module, sample):
        recorded.append((module, sample))
        assert all(arg.grad_fn is None for arg in sample)  # leaves, cut from the step's autograd graph
        return module

    warmed = []
    eager = _steps_with_a_smaller_batch("none")
    monkeypatch.setattr(sprint_module, "cuda_graphs_usable", lambda tensor: True)
    monkeypatch.setattr(sprint_module, "warm_capture_stream", lambda module, sample: warmed.append(sample))
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", stand_in)
    graphed = _steps_with_a_smaller_batch("cuda_graph")
    _assert_same_training(eager, graphed)
    assert [id(sample) for sample in warmed] == [id(sample) for _, sample in recorded]  # warmed before each recording
    # [L, B, H, n] column sums, [B, n] key mask, the start vectors of value, output, ffn_in, ffn_out, embedding, then
    # the 9 weights: 2 blocks x (W_V, W_O, W_1, W_2) and E
    starts = [(2, 4), (2, 4), (2, 4), (2, 8), (1, 4)]
    weights = [(4, 4), (4, 4), (8, 4), (4, 8)] * 2 + [(6, 4)]
    shapes = [[tuple(arg.shape) for arg in sample] for _, sample in recorded]
    assert shapes == [[(2, 2, 1, 3), (2, 3), *starts, *weights], [(2, 1, 1, 3), (1, 3), *starts, *weights]]
    module, sample = recorded[0]
    assert [arg.requires_grad for arg in sample] == [True] + [False] * 6 + [True] * 9  # column sums and weights
    # the weights are recorded as new leaves on the parameters' own memory (not the parameters themselves: their
    # gradient accumulators belong to the step's graph); graphed[3] lists them in the same order (per block: value,
    # out, ffn_in, ffn_out; then the embedding)
    assert all(w is not p and w.data_ptr() == p.data_ptr() for w, p in zip(sample[7:], graphed[3]))
    assert list(module.parameters()) == [] and module.layout.names == ("value", "output", "ffn_in", "ffn_out",
                                                                        "embedding")
    # four outputs: the three terms, then the new vectors packed into one tensor (one output without a gradient,
    # which autograd fills with zeros in every backward, instead of ten); u [G, m] then v [G, n] per estimator
    outputs = module(*sample)
    us = [(2, 4), (2, 4), (2, 8), (2, 4), (1, 6)]
    assert len(outputs) == 4 and [t.dim() for t in outputs] == [0, 0, 0, 1]
    assert outputs[3].numel() == sum(g * n for g, n in us) + sum(g * n for g, n in starts)


def test_packed_vectors_unpack_to_views_of_the_same_values():
    from recbole_sprint.model.sprint import packed_vectors, unpacked_vectors

    vectors = {"value": (torch.randn(2, 3), torch.randn(2, 5)), "embedding": (torch.randn(1, 7), torch.randn(1, 4))}
    flat = packed_vectors(("value", "embedding"), vectors)
    assert flat.shape == (6 + 10 + 7 + 4,)
    shapes = {name: (u.shape, v.shape) for name, (u, v) in vectors.items()}
    back = unpacked_vectors(shapes, flat)
    assert list(back) == ["value", "embedding"]
    for name, (u, v) in vectors.items():
        assert torch.equal(back[name][0], u) and torch.equal(back[name][1], v)
        assert back[name][0].data_ptr() >= flat.data_ptr() and back[name][1]._base is flat  # views, no copies


def test_inductor_cuda_graph_mode_records_the_terms_compiled_by_inductor(monkeypatch):
    """sprint_compile: inductor_cuda_graph hands make_graphed_callables the terms compiled by torch.compile (Inductor:
    C++ on the CPU, Triton on a GPU), one recording per input signature: training equals the eager one (the stand-in
    recorder runs the compiled module itself; the recorded kernels on the GPU: benchmarks/sprint_overhead.py
    --check_graphs)."""
    import recbole_sprint.model.sprint as sprint_module

    recorded = []
    compiled = []
    real_compile = torch.compile

    import torch._inductor.config as inductor_config
    import torch._inductor.graph as inductor_graph

    # every Inductor lowering of the terms, forward and backward: (compile_threads, is_backward, inside a call of the
    # compiled terms); the caches off so that this run lowers, and a default of 4 threads that a lowering outside
    # in_process_compilation would see
    lowerings, calling = [], []
    real_lowering = inductor_graph.GraphLowering.__init__

    def recording_lowering(self, *args, **kwargs):
        lowerings.append((inductor_config.compile_threads, kwargs.get("is_backward", False), bool(calling)))
        real_lowering(self, *args, **kwargs)

    def counting_compile(function, **options):
        compiled.append(options)
        real = real_compile(function, **options)

        def call(*args, **kwargs):
            calling.append(True)
            try:
                return real(*args, **kwargs)
            finally:
                calling.pop()

        return call

    monkeypatch.setattr(inductor_config, "force_disable_caches", True)
    monkeypatch.setattr(inductor_config, "compile_threads", 4)
    monkeypatch.setattr(inductor_graph.GraphLowering, "__init__", recording_lowering)
    eager = _three_sgd_steps("none")
    monkeypatch.setattr(sprint_module, "cuda_graphs_usable", lambda tensor: True)
    monkeypatch.setattr(sprint_module, "warm_capture_stream", lambda module, sample: None)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", lambda module, sample: recorded.append(module) or module)
    monkeypatch.setattr(torch, "compile", counting_compile)
    graphed = _three_sgd_steps("inductor_cuda_graph")
    assert len(recorded) == 1 and recorded[0]._terms is not sprint_module.sprint_terms  # one signature, compiled
    assert compiled == [dict(fullgraph=True, dynamic=False, backend="inductor")]
    # compiled in this process, the backward too, inside the call (not lazily in the backward pass): no pool of
    # compile workers, which slowed the training process's CPU work ~3x on a GPU machine (in_process_compilation);
    # the setting restored after each call
    assert (1, False, True) in lowerings and (1, True, True) in lowerings
    assert {threads for threads, _, _ in lowerings} == {1} and all(inside for _, _, inside in lowerings)
    import torch._functorch.config as functorch_config

    assert inductor_config.compile_threads == 4 and not functorch_config.force_non_lazy_backward_lowering
    assert eager[0] == pytest.approx(graphed[0], rel=1e-5)
    for a, b in zip(eager[1] + eager[2], graphed[1] + graphed[2]):
        assert torch.allclose(a, b, atol=1e-5)


def test_cuda_graph_mode_off_cuda_runs_eagerly_with_one_warning():
    eager = _steps_with_a_smaller_batch("none")
    with pytest.warns(RuntimeWarning, match="cuda_graph records CUDA graphs, which need a CUDA device") as caught:
        graphed = _steps_with_a_smaller_batch("cuda_graph")
    assert len([w for w in caught if "cuda_graph" in str(w.message)]) == 1
    _assert_same_training(eager, graphed)


def _lazy_steps(every, steps=6, **config):
    """Totals, epoch parts and the value estimator's ``v`` after each step of SGD on ``rec + regulariser`` with
    ``sprint_every``; the attention "forward" runs only where the SPRINT mixin would observe it (``active``)."""
    layers, embedding, regularizer = _two_block_regularizer(3, sprint_every=every, **config)
    optimizer = torch.optim.SGD(list(layers.parameters()) + list(embedding.parameters()), lr=0.1)
    valid = torch.tensor([[True, True, False]])
    totals, vs, actives = [], [], []
    for step in range(steps):
        actives.append(regularizer.active)
        if regularizer.active:
            regularizer.observe(valid, valid)
        for block in layers:  # the backbone's forward runs every step; the hook keeps nothing on a lazy step
            block.probs(torch.softmax(torch.randn(1, 1, 3, 3), -1))
        rec = torch.tensor(1.0 + step)
        optimizer.zero_grad()
        total = regularizer.add_to(rec)
        if total.requires_grad:
            total.backward()
        optimizer.step()
        totals.append(total)
        vs.append(regularizer.value.v.clone())
    return totals, vs, actives, regularizer.pop_epoch_parts()


def test_lazy_regularisation_runs_the_terms_every_kth_step_weighted_by_k():
    eager_totals, _, eager_actives, _ = _lazy_steps(every=1, steps=1)
    totals, vs, actives, parts = _lazy_steps(every=3)
    assert eager_actives == [True] and actives == [True, False, False, True, False, False]
    # step 0: the same weights and inputs as the eager run, the terms 3-fold
    assert totals[0].item() - 1.0 == pytest.approx(3 * (eager_totals[0].item() - 1.0), rel=1e-6)
    for step in (1, 2, 4, 5):  # lazy steps: the recommendation loss itself, no power iteration
        assert totals[step].item() == 1.0 + step and not totals[step].requires_grad
        assert torch.equal(vs[step], vs[step - 1])
    assert not torch.equal(vs[3], vs[2])  # the next active step moved the warm-start vectors
    # the epoch's per-step parts still add up to the mean training loss per step
    assert parts["rec"] == pytest.approx(sum(1.0 + step for step in range(6)) / 6)
    assert sum(parts.values()) == pytest.approx(sum(t.item() for t in totals) / 6, rel=1e-6)


def test_lazy_regularisation_with_cuda_graphs_trains_as_lazy_eager(monkeypatch):
    """sprint_every and sprint_compile: cuda_graph together (the stand-in recorder of the test above): the graphed
    terms run on the active steps only, one recording, and training equals the eager lazy run."""
    import recbole_sprint.model.sprint as sprint_module

    torch.manual_seed(5)
    eager = _lazy_steps(every=2, steps=5)
    recorded = []
    monkeypatch.setattr(sprint_module, "cuda_graphs_usable", lambda tensor: True)
    monkeypatch.setattr(sprint_module, "warm_capture_stream", lambda module, sample: None)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", lambda module, sample: recorded.append(1) or module)
    torch.manual_seed(5)
    graphed = _lazy_steps(every=2, steps=5, sprint_compile="cuda_graph")
    assert graphed[2] == eager[2] == [True, False, True, False, True] and recorded == [1]
    assert [t.item() for t in graphed[0]] == pytest.approx([t.item() for t in eager[0]], rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(graphed[1], eager[1]))
    assert graphed[3] == pytest.approx(eager[3], rel=1e-6)


def test_every_one_is_the_paper_s_every_step():
    totals, _, actives, _ = _lazy_steps(every=1, steps=3)
    assert actives == [True] * 3 and all(t.requires_grad and t.item() > 1.0 + i for i, t in enumerate(totals))

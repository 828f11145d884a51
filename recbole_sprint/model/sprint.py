r"""The SPRINT regulariser, in one place.

SPRINT (Yang, Pan et al., "The Pitfall of Scaling Up: Uncovering and Mitigating Popularity Bias Amplification
in Scaling Transformer-based Recommenders", KDD 2026) bounds the spectral norm of a transformer recommender's
score matrix by the product, over blocks, of ``1 + C_block`` and penalises the logarithm of that bound:

.. math::

    \mathcal{L} = \mathcal{L}_{rec}
        + \lambda_{attn} \frac{1}{L}\sum_\ell \log\Big(1 + \sqrt{\textstyle\sum_h \tilde S^{(\ell)}_h\,
          \sigma(W^{(\ell)}_{V,h})^2}\;\sigma(W^{(\ell)}_O)\Big)
        + \lambda_{ffn} \frac{1}{L}\sum_\ell \log\big(1 + \sigma(W^{(\ell)}_1)\,\sigma(W^{(\ell)}_2)\big)
        + \lambda_{emb} \log\big(1 + \sigma(E)\big)

* :math:`\tilde S_h = \frac{1}{\tau}\log\sum_{(b, j)} \exp(\tau\, c_{b,h,j})` is a soft maximum over every valid
  key column of the batch (the batch is one block-diagonal attention matrix), where
  :math:`c_{b,h,j} = \sum_{i\ \mathrm{valid}} P_{b,h,i,j}` is the column sum of the attention matrix actually
  applied to V (after attention dropout), with padding query rows zeroed and padding key columns left out.
* :math:`\sigma(\cdot)` is the spectral norm, estimated by power iteration with persistent ``u``/``v``
  buffers (registered at construction, so ``load_state_dict(strict=True)`` works) that are warm-started
  across training steps.

Gradient semantics of the power iteration (a documented choice, the authors' one): the iteration runs with
autograd on and the weight not detached, starting from a detached copy of the stored ``v``; the gradient
reaches ``W`` directly and through the iterate ``v(W)``. Near convergence the extra path vanishes, and the
estimate :math:`\hat\sigma = \lVert W v \rVert` is then exactly differentiable for a fixed start vector.

Lazy regularisation (``sprint_every: k``, default 1 = the paper's every step): the terms are computed on every k-th
training step only, weighted by k (so that their gradient per step is the same on average), and the other steps
pay nothing (no column sums, no power iterations), as StyleGAN2 does with its R1 penalty (Karras et al., CVPR
2020, "lazy regularization"). It is an opt-in departure from the paper, for when the regulariser's per-step cost
matters; the power-iteration vectors then advance once per k steps. Under AdamW it is not the same regulariser in
effect (measured: benchmarks/results/README.md, "Lazy SPRINT"): search its weights rather than reuse every-step ones.

The regulariser is computed only in training mode; evaluation never pays for it. With every weight at 0 it
does nothing at all (no hooks, no power iterations, no random numbers drawn), so a SPRINT model then trains
exactly like its backbone.

A backbone is wrapped, not re-implemented: the model hands over one :class:`SprintBlock` per transformer
layer (references to its existing modules). The attention matrix is read by a forward hook on the module
whose output is the attention matrix applied to V (RecBole's ``MultiHeadAttention.attn_dropout``); an attention
that never stores that matrix (``SASRecPP``'s ``attention_impl: fused``) provides its column sums instead,
through a :class:`ColumnSums` module the regulariser hooks the same way.
"""

import contextlib
import functools
import math
import warnings
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recbole_sprint.model.fused_power_iteration import (POWER_IMPLS, fused_spectral_norms, layout_matrices,
                                                       unusable_reason)
# tests patch cuda_graphs_usable and warm_capture_stream here
from recbole_sprint.model.graphs import cuda_graphs_usable, no_collection_while_recording, warm_capture_stream

SPRINT_LOSS_NAMES = ("rec", "sprint_attn", "sprint_ffn", "sprint_emb")
SPRINT_COMPILE_MODES = ("none", "default", "aot_eager", "cuda_graph", "inductor_cuda_graph")
SPRINT_GRAPH_MODES = ("cuda_graph", "inductor_cuda_graph")  # the modes that record CUDA graphs
INDUCTOR_GRAPH_BACKEND = "inductor"  # inductor_cuda_graph's torch.compile backend (tests: "aot_eager")


# ---------------------------------------------------------------------------------------------------
# Pure functions (tested one by one)
# ---------------------------------------------------------------------------------------------------
def autocast_off(device_type):
    """A context that switches autocast off, or a no-op where it is off already (entering ``torch.autocast``
    costs host time on every call, which adds up over the layers of every training step)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def power_iteration(weight, v, n_iters, eps=1e-12):
    r"""Estimate the spectral norm of a batch of matrices.

    Args:
        weight: ``[G, m, n]`` matrices (autograd flows through them).
        v: ``[G, n]`` start vectors (unit norm; pass a detached copy of the stored buffer).
        n_iters: number of power-iteration steps (>= 1).

    Returns:
        ``(sigma [G], u [G, m], v [G, n])`` with ``sigma = ||W v||`` after the last step, ``u = W v / sigma`` and the
        last ``v`` (``u`` and ``v`` detached: the stored vectors, not part of the estimate).

    Each step is ``v <- normalize(W^T (W v))``: the textbook step normalises ``u = W v`` before ``v = W^T u``, but
    ``v`` is normalised right after, so the scale of ``u`` cancels (the same ``v`` and ``sigma``, values and gradients).
    The gradient reaches ``W`` directly and through the iterates ``v(W)`` (spec sprint.md 1.3), computed by
    :class:`_PowerIteration`'s own backward: the same gradient as autograd through these operators, written as one
    rank-``3 n_iters`` update per matrix instead of ``3 n_iters`` dense outer products and their sums.
    """
    return _PowerIteration.apply(weight, v, n_iters, eps)


def power_iteration_reference(weight, v, n_iters, eps=1e-12):
    """``(sigma, v)`` of :func:`power_iteration` through autograd's own operators: the reference its backward is
    tested against, and the baseline of ``benchmarks/sprint_overhead.py --power_iteration``."""
    for _ in range(n_iters):
        v = F.normalize(_bmv(weight.transpose(1, 2), _bmv(weight, v)), dim=-1, eps=eps)
    return torch.linalg.vector_norm(_bmv(weight, v), dim=-1), v


def _bmv(matrices, vectors):
    """``[G, m, n] @ [G, n] -> [G, m]``."""
    return torch.bmm(matrices, vectors.unsqueeze(-1)).squeeze(-1)


class _PowerIteration(torch.autograd.Function):
    r""":func:`power_iteration` with a hand-written backward.

    Forward, for ``t = 1 .. k``: ``w_t = W v_{t-1}``, ``z_t = W^T w_t``, ``v_t = z_t / n_t`` with
    ``n_t = max(|z_t|, eps)``; then ``y = W v_k``, ``sigma = |y|``, ``u = y / sigma`` (0 where ``sigma`` is 0).
    Backward from ``g = dL/dsigma``, walking the steps back: ``dy = g u`` (the norm's gradient; 0 at ``y = 0``, as
    ``torch.linalg.vector_norm``'s), ``dW += dy v_k^T``, ``dv_k = W^T dy``; at step ``t``
    ``dz_t = (dv_t - a_t v_t (v_t . dv_t)) / n_t`` with ``a_t = [|z_t| >= eps]`` (where the norm was clamped, ``v_t``
    is ``z_t / eps`` and its gradient ``dv_t / eps``), ``dW += w_t dz_t^T``, ``dw_t = W dz_t``,
    ``dW += dw_t v_{t-1}^T``, ``dv_{t-1} = W^T dw_t``. The ``3k`` rank-one terms of ``dW`` are one batched product
    ``[G, m, 3k] @ [G, 3k, n]``: ``dW`` is written once, where autograd writes one dense outer product per ``bmm`` and
    adds them (at the 0.34B configuration each is a pass over 283M weights).

    Written for few operators (each a kernel launch: what SPRINT's terms cost in a small model's step, in CUDA graphs
    too): with one step, 9 in the forward and 11 in the backward of one batch of matrices (``v_t . dv_t`` as one
    batched product, the projection as one ``addcmul``, ``u`` reused for ``dy``), where the twenty-ninth session's
    version dispatched 10 and 19 (counted on the CPU, views left out).
    """

    @staticmethod
    def forward(ctx, weight, v, n_iters, eps):
        vs, ws, norms, clamped = [v], [], [], []
        for _ in range(n_iters):
            w = _bmv(weight, v)  # [G, m]
            z = _bmv(weight.transpose(1, 2), w)  # [G, n]
            norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)  # [G, 1], before the clamp
            divisor = norm.clamp_min(eps)
            v = z / divisor
            vs.append(v)
            ws.append(w)
            norms.append(norm)
            clamped.append(divisor)
        y = _bmv(weight, v)  # [G, m]
        sigma = torch.linalg.vector_norm(y, dim=-1, keepdim=True)  # [G, 1]
        u = y / sigma.clamp_min(torch.finfo(sigma.dtype).tiny)  # y / sigma; 0 where y is 0
        ctx.n_iters, ctx.eps = n_iters, eps
        ctx.save_for_backward(weight, u, *vs, *ws, *norms, *clamped)
        ctx.mark_non_differentiable(u, v)
        ctx.set_materialize_grads(False)
        return sigma.squeeze(-1), u, v

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_sigma, grad_u, grad_v):  # u, v are not differentiable: their gradients are not used
        if grad_sigma is None:
            return None, None, None, None
        weight, u, *rest = ctx.saved_tensors
        k, eps = ctx.n_iters, ctx.eps
        vs, ws, norms, clamped = rest[: k + 1], rest[k + 1 : 2 * k + 1], rest[2 * k + 1 : 3 * k + 1], rest[3 * k + 1 :]
        dy = grad_sigma.unsqueeze(-1) * u  # [G, m]
        left, right = [dy], [vs[k]]
        dv = _bmv(weight.transpose(1, 2), dy)  # [G, n]
        grad_v0 = None
        for t in range(k, 0, -1):
            kept = vs[t] * (norms[t - 1] >= eps)  # a_t v_t: [G, n]
            along = torch.bmm(kept.unsqueeze(1), dv.unsqueeze(-1)).squeeze(-1)  # a_t (v_t . dv_t): [G, 1]
            dz = torch.addcmul(dv, kept, along, value=-1) / clamped[t - 1]  # [G, n]
            dw = _bmv(weight, dz)  # [G, m]
            left += [ws[t - 1], dw]
            right += [dz, vs[t - 1]]
            if t > 1:
                dv = _bmv(weight.transpose(1, 2), dw)
            elif ctx.needs_input_grad[1]:
                grad_v0 = _bmv(weight.transpose(1, 2), dw)
        grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_weight = torch.bmm(torch.stack(left, dim=-1), torch.stack(right, dim=-2))  # [G, m, 3k] @ [G, 3k, n]
        return grad_weight, grad_v0, None, None


def attention_column_sums(probs, query_mask):
    r"""Column sums of the attention matrix over valid query rows.

    Args:
        probs: ``[B, H, n, n]`` attention matrix applied to V (query i, key j).
        query_mask: ``[B, n]``, True (or 1.0) where the query position holds a real token.

    Returns:
        ``[B, H, n]``: :math:`c_{b,h,j} = \sum_i \mathrm{query\_mask}_{b,i} P_{b,h,i,j}`, in ``probs``' dtype
        (autocast off: a float32 attention matrix is summed in float32).

    A batched vector-matrix product on a view of ``probs`` (``[B*H, 1, n] @ [B*H, n, n]``): unlike
    ``einsum("bhij,bi->bhj")``, which copies ``probs`` into a ``[B, H*n, n]`` layout first, it reads the
    ``n x n`` matrices once, and its backward writes the rank-one gradient directly (2-3x faster forward + backward
    on CPU at B=64, H=4, n=200).
    """
    with autocast_off(probs.device.type):
        weights = query_mask.to(probs.dtype)[:, None, None, :]  # [B, 1, 1, n]
        return torch.matmul(weights, probs).squeeze(2)  # [B, H, 1, n] -> [B, H, n]


class _AttendWithColumnSums(torch.autograd.Function):
    """``O = P V`` and ``c = w^T P`` in one autograd node; see :func:`attend_with_column_sums`."""

    @staticmethod
    def forward(ctx, probs, value, query_weights):
        ctx.save_for_backward(probs, value, query_weights)
        return torch.matmul(probs, value), attention_column_sums(probs, query_weights)  # [B, H, n, d_h], [B, H, n]

    @staticmethod
    def backward(ctx, grad_out, grad_sums):  # an unused output's gradient arrives as zeros (materialised)
        probs, value, query_weights = ctx.saved_tensors
        batch, heads, n, head_size = value.shape
        grad_probs = grad_value = None
        if ctx.needs_input_grad[0]:
            # dP = dO V^T + w g^T as one product over d_h + 1 (padded to a multiple of 8: aligned rows):
            # [dO | w | 0] [V | g | 0]^T, each operand written once (a copy, a column, the pad columns zeroed)
            pad = -(-(head_size + 1) // 8) * 8 - head_size - 1
            left = padded_columns(grad_out, query_weights[:, None, :, None].expand(batch, heads, n, 1), pad)
            right = padded_columns(value, grad_sums[..., None], pad)  # both [B, H, n, d_h + 1 + pad]
            grad_probs = torch.matmul(left, right.transpose(-1, -2))  # [B, H, n, n]
        if ctx.needs_input_grad[1]:
            grad_value = torch.matmul(probs.transpose(-1, -2), grad_out)  # [B, H, n, d_h]
        return grad_probs, grad_value, None


def padded_columns(matrix, column, pad):
    """``[matrix | column | 0]`` along the last dimension: ``[B, H, n, d]``, ``[B, H, n, 1]`` and ``pad`` zero
    columns -> ``[B, H, n, d + 1 + pad]``, in ``matrix``' dtype.

    Written into an uninitialised tensor by slices: one copy of ``matrix``, the column, the ``pad`` columns zeroed.
    (H200 profiles, ml-1m-3k 8 x 256: ``torch.cat`` of the three took 0.76 ms a step for the 16 operands,
    ``CatArrayBatchedCopy``; a zero fill of the whole tensor before the slice copies cost ~0.1 ms more than the
    copies alone, ~0.43 ms.)
    """
    out = matrix.new_empty(*matrix.shape[:-1], matrix.shape[-1] + 1 + pad)
    d = matrix.shape[-1]
    out[..., :d] = matrix
    out[..., d:d + 1] = column
    out[..., d + 1:] = 0
    return out


def attend_with_column_sums(probs, value, query_weights):
    r"""The attention output and SPRINT's column sums of one attention matrix, from one autograd node.

    Args:
        probs: ``[B, H, n, n]`` the matrix applied to V (after dropout); value: ``[B, H, n, d_h]``, same dtype.
        query_weights: ``[B, n]``, 1 for a valid query row, 0 for padding (any float dtype).

    Returns:
        ``(P V [B, H, n, d_h], c [B, H, n])`` with ``c = `` :func:`attention_column_sums` ``(probs, query_weights)``.

    The same values and gradients as ``torch.matmul(probs, value)`` beside :func:`attention_column_sums`; the
    backward folds the column sums' rank-one gradient ``w g^T`` into the product that makes ``dP = dO V^T`` (one
    ``[n, d_h + 1] x [d_h + 1, n]`` product per head instead of that product, an outer product and a sum, each of
    ``n x n``; on the H200 at 8 layers, ml-1m-3k, the separate path's column-sum products, forward and backward,
    took 0.62 ms a step and the ``n x n`` additions 0.54 ms).
    """
    return _AttendWithColumnSums.apply(probs, value, query_weights.to(probs.dtype))


def soft_max_columns(column_sums, key_mask, temperature):
    r"""Soft maximum over all valid key columns of the batch, one value per head.

    :math:`\tilde S_h = \frac{1}{\tau}\,\mathrm{logsumexp}_{(b,j):\ \mathrm{key\_mask}_{b,j}}(\tau\,c_{b,h,j})`;
    it satisfies :math:`\max c \le \tilde S_h \le \max c + \log(M)/\tau` for M valid columns.

    Args:
        column_sums: ``[B, H, n]``, or ``[L, B, H, n]`` for L layers at once.
        key_mask: ``[B, n]`` bool, True for key columns that take part.
        temperature: :math:`\tau > 0`.

    Returns:
        ``[H]`` (``[L, H]``), in float32 at least (half-precision inputs are upcast).
    """
    column_sums = column_sums.to(torch.promote_types(column_sums.dtype, torch.float32))
    scaled = (temperature * column_sums).masked_fill(~key_mask[:, None, :], float("-inf"))  # [(L,) B, H, n]
    return torch.logsumexp(scaled, dim=(-3, -1)) / temperature  # over every (b, j) of a head


def attention_block_term(soft_max, value_norms, output_norm, eps=1e-12):
    r""":math:`\log(1 + \sqrt{\sum_h \tilde S_h \sigma(W_{V,h})^2}\,\sigma(W_O))`.

    The square-root argument is clamped at ``eps``: with a signed, non-normalised attention (HSTU) the soft
    maximum can be <= 0, where the bound is vacuous; the term is then flat (zero gradient) instead of NaN.

    Args:
        soft_max: ``[H]``; value_norms: ``[H]``; output_norm: scalar or ``[1]``.
    """
    return attention_term(soft_max[None], value_norms[None], output_norm.reshape(1), eps)


def attention_term(soft_max, value_norms, output_norms, eps=1e-12):
    r"""The mean over layers of :func:`attention_block_term`: ``soft_max [L, H]``, ``value_norms [L, H]``,
    ``output_norms [L]`` -> a scalar."""
    radicand = (soft_max * value_norms.pow(2)).sum(-1).clamp_min(eps)  # [L]
    return torch.log1p(radicand.sqrt() * output_norms).mean()


def ffn_term(in_norms, out_norms):
    r""":math:`\frac{1}{L}\sum_\ell \log(1 + \sigma(W^{(\ell)}_1)\,\sigma(W^{(\ell)}_2))` of ``[L]`` norms each."""
    return torch.log1p(in_norms * out_norms).mean()


def embedding_term(embedding_norm):
    r""":math:`\log(1 + \sigma(E))`."""
    return torch.log1p(embedding_norm.reshape(()))


# ---------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------
def estimate_spectral_norms(weight, start, n_iters):
    """:func:`power_iteration` of ``weight [G, m, n]`` from ``start [G, n]`` in float32 at least (float32 for half,
    bfloat16 and float32 weights, float64 for float64 ones), autocast off."""
    dtype = torch.promote_types(weight.dtype, torch.float32)
    with autocast_off(weight.device.type):
        return power_iteration(weight.to(dtype), start.to(dtype), n_iters)


class SpectralNormEstimator(nn.Module):
    """Power-iteration state for ``G`` matrices of shape ``[m, n]``: persistent buffers ``u [G, m]``, ``v [G, n]``.

    Calling it with the current weights returns their spectral norms ``[G]`` (with gradient) and, in
    training mode, stores the new ``u``/``v`` (detached) so the next step starts where this one ended.
    The iteration runs in float32 whatever the autocast context (in float64 for float64 weights: a model
    converted with ``.double()``, whose buffers are then float64 too).
    """

    def __init__(self, n_matrices, rows, cols, n_iters, generator):
        super().__init__()
        self.n_iters = n_iters
        self.register_buffer("u", F.normalize(torch.randn(n_matrices, rows, generator=generator), dim=-1))
        self.register_buffer("v", F.normalize(torch.randn(n_matrices, cols, generator=generator), dim=-1))

    def store(self, u, v):
        """Keep ``u``, ``v`` for the next step's warm start (training mode only). The buffers are rebound to the
        new tensors, never written in place: this step's backward pass still reads the ``v`` it started from."""
        if self.training:
            self.u, self.v = u.detach(), v.detach()

    def forward(self, weight):
        sigma, u, v = estimate_spectral_norms(weight, self.v, self.n_iters)
        self.store(u, v)
        return sigma


class ColumnSums(nn.Module):
    r"""Hook point of an attention that computes its own column sums (e.g. a fused kernel without the ``n x n``
    matrix): an identity on ``c [B, H, n]``, :math:`c_{b,h,j} = \sum_{i\ \mathrm{valid}} P_{b,h,i,j}` of the matrix
    applied to V (padding query rows left out, padding key columns 0), as :func:`attention_column_sums` gives.

    The regulariser sets :attr:`wanted` when ``sprint_attn_weight > 0``; the attention computes the sums only when
    it is set and the model trains, and passes them through this module, whose forward hook stores them.
    """

    def __init__(self):
        super().__init__()
        self.wanted = False

    def forward(self, column_sums):
        return column_sums


def record_graphs(module, inputs, weights):
    """``torch.cuda.make_graphed_callables(module, ...)``: the forward and the backward of ``module(*inputs, *weights)``
    as two CUDA graphs (after a few eager warm-up runs on a side stream), autocast off while recording (the terms
    switch it off themselves). The graphs record on copies of ``inputs`` and on fresh leaf tensors that share the
    ``weights``' memory: the step's autograd graph, alive while the terms are recorded, holds the parameters' own
    gradient accumulators, made on the default stream, and the recording must not wait on them (on the H200 the first
    version, with the parameters themselves, failed so: "operation failed due to a previous error during capture")."""
    sample = tuple(arg.detach().clone().requires_grad_(arg.requires_grad) for arg in inputs)
    sample += tuple(weight.detach().requires_grad_(weight.requires_grad) for weight in weights)
    try:
        with torch.autocast("cuda", enabled=False), no_collection_while_recording():
            warm_capture_stream(module, sample)
            return torch.cuda.make_graphed_callables(module, sample)
    except RuntimeError as error:  # a failed recording can leave CUDA's random-number state unusable: stop here
        raise RuntimeError(f"sprint_compile: {' or '.join(SPRINT_GRAPH_MODES)} could not record SPRINT's terms as "
                           f"CUDA graphs ({error}); train with sprint_compile: none or default") from error


class TermsLayout(NamedTuple):
    """What :func:`sprint_terms` needs besides tensors: numbers and positions only, so that ``torch.compile`` guards
    them by value and every model of one structure shares one compiled graph (a guard on a module's identity would
    compile again for each new model, and with ``fullgraph`` fail at torch's recompile limit, 8 models a process).

    ``weights`` (the tensors ``sprint_terms`` gets) are :meth:`SPRINTRegularizer.regularised_parameters`; ``value``
    gives per layer ``(index, first row, end row)`` of :math:`W_V` (``None`` rows: all) in ``[H * d_v, d]`` layout,
    ``output``, ``ffn_in``, ``ffn_out`` the index per layer (empty when the term is off), ``embedding`` the index of
    :math:`E` (``None`` when off); ``names`` the power-iteration estimators, in the order of the start vectors passed
    and of the ``(u, v)`` returned."""

    attn_weight: float
    ffn_weight: float
    emb_weight: float
    temperature: float
    n_iters: int
    n_heads: int
    value: Tuple[Tuple[int, Optional[int], Optional[int]], ...]
    output: Tuple[int, ...]
    ffn_in: Tuple[int, ...]
    ffn_out: Tuple[int, ...]
    embedding: Optional[int]
    names: Tuple[str, ...]
    power_impl: str = "torch"


def stacked_weights(layout, weights):
    """``{estimator name: [G, m, n]}`` of the enabled terms: ``value [L*H, d_v, d]`` (one matrix per head),
    ``output [L, d, H*d_v]``, ``ffn_in [L, inner, d]``, ``ffn_out [L, d, inner]``, ``embedding [1, n_items, d]``."""
    stacked = {}
    if layout.value:
        # [H * d_v, d] per layer, sliced only where the rows are a part of the weight (a slice's backward is a kernel)
        heads = [weights[index] if first is None else weights[index][first:end] for index, first, end in layout.value]
        stacked["value"] = torch.cat([w.reshape(layout.n_heads, -1, w.size(-1)) for w in heads])
        stacked["output"] = torch.stack([weights[index] for index in layout.output])
    if layout.ffn_in:
        stacked["ffn_in"] = torch.stack([weights[index] for index in layout.ffn_in])
        stacked["ffn_out"] = torch.stack([weights[index] for index in layout.ffn_out])
    if layout.embedding is not None:
        stacked["embedding"] = weights[layout.embedding].unsqueeze(0)
    return stacked


def spectral_norms(layout, weights, starts):
    """``({name: sigma [G]}, {name: (u [G, m], v [G, n])})`` of every estimator of ``layout.names`` from its start
    vector (``starts``, in that order): one batched chain of operators per estimator over its stacked weights, or
    (``layout.power_impl == "triton"``) every matrix in a few Triton kernels (:func:`fused_spectral_norms`)."""
    if layout.power_impl == "triton":
        return fused_spectral_norms(layout, weights, starts)
    matrices = stacked_weights(layout, weights)
    sigma, vectors = {}, {}
    for name, start in zip(layout.names, starts):
        norms, u, v = estimate_spectral_norms(matrices[name], start, layout.n_iters)  # [G], [G, m], [G, n]
        sigma[name], vectors[name] = norms, (u, v)
    return sigma, vectors


def weighted_terms(layout, column_sums, key_mask, sigma, like):
    """``(attn, ffn, emb)``: the weighted terms from the column sums and the spectral norms ``sigma`` (a term that is
    off is an exact zero, made like ``like``)."""
    attn = ffn = emb = None
    if not (layout.attn_weight > 0 and layout.ffn_weight > 0 and layout.emb_weight > 0):
        attn = ffn = emb = like.new_zeros(())  # one kernel, made only where a term is off
    if layout.attn_weight > 0:
        stacked = column_sums if torch.is_tensor(column_sums) else torch.stack(column_sums)
        soft_max = soft_max_columns(stacked, key_mask, layout.temperature)  # [L, H]
        value_norms = sigma["value"].view(-1, layout.n_heads)  # [L, H]
        attn = layout.attn_weight * attention_term(soft_max, value_norms, sigma["output"])
    if layout.ffn_weight > 0:
        ffn = layout.ffn_weight * ffn_term(sigma["ffn_in"], sigma["ffn_out"])
    if layout.emb_weight > 0:
        emb = layout.emb_weight * embedding_term(sigma["embedding"])
    return attn, ffn, emb


def sprint_terms(layout, column_sums, key_mask, starts, weights, terms=weighted_terms):
    """The regulariser's weighted terms after the backbone's forward pass, one function of tensors (what
    ``sprint_compile`` compiles or records).

    Args:
        layout: :class:`TermsLayout`.
        column_sums: ``L x [B, H, n]`` or stacked ``[L, B, H, n]`` (``None`` without the attention term).
        key_mask: ``[B, n]`` bool (``None`` without the attention term).
        starts: the power-iteration start vectors, one per ``layout.names``.
        weights: the regularised weights (positions in ``layout``).
        terms: :func:`weighted_terms` or its compiled form.

    Returns:
        ``(attn, ffn, emb, vectors)``: the weighted terms (a term that is off is an exact zero) and the new
        ``(u, v)`` per estimator, ``{name: (u, v)}``.
    """
    sigma, vectors = spectral_norms(layout, weights, starts)
    return (*terms(layout, column_sums, key_mask, sigma, weights[0]), vectors)


def compiled_sprint_terms(backend, **options):
    """:func:`sprint_terms` with ``torch.compile`` (``fullgraph``, ``backend``, ``options``): all of it, power
    iterations included, with ``power_impl: torch``; with ``triton`` (Triton launches that ``torch.compile`` does not
    trace) the power iterations run their kernels and only :func:`weighted_terms` is compiled.

    Inductor compiles in this process (:func:`in_process_compilation`)."""
    compiled = {}  # each compiled on first use

    def run(layout, column_sums, key_mask, starts, weights):
        with in_process_compilation(backend):  # a call that compiles (the first of a batch shape) does it here
            if layout.power_impl == "triton":
                if "terms" not in compiled:
                    compiled["terms"] = torch.compile(weighted_terms, fullgraph=True, backend=backend, **options)
                return sprint_terms(layout, column_sums, key_mask, starts, weights, terms=compiled["terms"])
            if "whole" not in compiled:
                compiled["whole"] = torch.compile(sprint_terms, fullgraph=True, backend=backend, **options)
            return compiled["whole"](layout, column_sums, key_mask, starts, weights)

    return run


@contextlib.contextmanager
def in_process_compilation(backend):
    """For ``backend`` ``inductor``: the terms compile in this process, their backward included, while this context is
    open (both settings restored after):

    * Inductor's ``compile_threads`` 1, so that it compiles their few kernels here instead of starting its pool of
      compile workers (``compile_threads`` > 1, the default on a machine of several cores). With that pool alive, the
      training process's own CPU work ran 3x to 4.5x slower for the rest of the run (an H100 machine of 16 cores,
      thirty-fifth session: the dataloader's indexing of a Beauty batch 0.9 -> 4.0 ms; SPRINT +183% of a Beauty epoch
      at 2 layers);
    * AOTAutograd's ``force_non_lazy_backward_lowering``: by default the backward is compiled at its first run, in the
      backward pass, outside this context, with the default ``compile_threads`` (seen on the CPU,
      ``tests/model/test_sprint.py``). That still started the pool: on an H100 with empty compile caches, in two runs
      of two (SPRINT +20.8% and +3.3% of a Beauty epoch at 2 layers), and none with the backward compiled in the
      call (+3.0%, +2.9%); one of eight runs with the caches as earlier runs had left them was +113% (thirty-sixth
      session, benchmarks/results/README.md).

    Other backends: nothing changes. (Set and restored by hand: ``config.patch`` costs ~5x more, and with
    ``sprint_compile: default`` this runs every step.)"""
    if backend != "inductor":
        yield
        return
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    eager_backward = hasattr(functorch_config, "force_non_lazy_backward_lowering")  # not in every torch >= 2.4
    threads = inductor_config.compile_threads
    lazy = functorch_config.force_non_lazy_backward_lowering if eager_backward else None
    inductor_config.compile_threads = 1
    if eager_backward:
        functorch_config.force_non_lazy_backward_lowering = True
    try:
        yield
    finally:
        inductor_config.compile_threads = threads
        if eager_backward:
            functorch_config.force_non_lazy_backward_lowering = lazy


def packed_vectors(names, vectors):
    """The new power-iteration vectors ``{name: (u, v)}`` as one flat tensor, ``u`` then ``v`` of each of ``names`` in
    order (:func:`unpacked_vectors` undoes it): one output of a recorded graph instead of two per estimator. Autograd
    gives every output of ``make_graphed_callables``' function that gets no gradient a tensor of zeros in the backward
    (a fill kernel and host work each step), and these vectors never get one."""
    return torch.cat([vector.reshape(-1) for name in names for vector in vectors[name]])


def unpacked_vectors(shapes, flat):
    """``{name: (u, v)}``, views of ``flat`` (:func:`packed_vectors`), from ``{name: (u's shape, v's shape)}`` in the
    packing's order."""
    vectors, offset = {}, 0
    for name, (u_shape, v_shape) in shapes.items():
        u_size, v_size = math.prod(u_shape), math.prod(v_shape)
        u = flat[offset:offset + u_size].view(u_shape)
        v = flat[offset + u_size:offset + u_size + v_size].view(v_shape)
        vectors[name], offset = (u, v), offset + u_size + v_size
    return vectors


class GraphedTerms(nn.Module):
    """:func:`sprint_terms` as tensors in, tensors out, the form ``make_graphed_callables`` records.

    Inputs: the stacked column sums ``[L, B, H, n]`` and the key mask ``[B, n]`` (with the attention term), one start
    vector per estimator of ``layout.names``, then the regularised weights; outputs: ``(attn, ffn, emb, vectors)``, the
    new vectors packed into one tensor (:func:`packed_vectors`). It has no parameters of its own: the recorded
    backward returns the weights' gradients as those of inputs, and autograd adds them to the parameters it is called
    with.

    With ``compiled`` (``sprint_compile: inductor_cuda_graph``) the terms are ``torch.compile``'d (static shapes, one
    graph): the recording then holds Inductor's fused kernels instead of one kernel per operator.
    """

    def __init__(self, layout, n_weights, compiled=False):
        super().__init__()
        self.layout = layout
        self.n_weights = n_weights
        self._terms = sprint_terms
        if compiled:
            self._terms = compiled_sprint_terms(INDUCTOR_GRAPH_BACKEND, dynamic=False)

    def forward(self, *args):
        args, weights = args[: len(args) - self.n_weights], args[len(args) - self.n_weights :]
        column_sums, key_mask, starts = (None, None, args)
        if self.layout.attn_weight > 0:
            column_sums, key_mask, starts = args[0], args[1], args[2:]
        attn, ffn, emb, vectors = self._terms(self.layout, column_sums, key_mask, starts, weights)
        return attn, ffn, emb, packed_vectors(self.layout.names, vectors)


@dataclass
class SprintBlock:
    """References to the parts of one transformer block that SPRINT regularises (nothing is copied).

    Every ``*_module`` has a ``weight`` in ``nn.Linear`` layout ``[out_features, in_features]``.

    Attributes:
        probs_module: module whose forward output is the attention matrix applied to V, ``[B, H, n, n]``, or
            ``None`` when ``column_sums_module`` is given.
        value_module: holds :math:`W_V`; ``value_rows`` selects its rows when the projection is fused
            (e.g. HSTU's U/V/Q/K projection); ``None`` means all rows. The rows are ``H`` head blocks.
        output_module: holds :math:`W_O`, ``[d, H * d_v]``.
        n_heads: number of heads ``H``.
        ffn_in_module, ffn_out_module: :math:`W_1`, :math:`W_2` of the feed-forward network, or ``None``
            for a block without one (HSTU).
        column_sums_module: a :class:`ColumnSums` through which the attention provides its column sums
            directly; exactly one of it and ``probs_module`` is given.
    """

    probs_module: Optional[nn.Module]
    value_module: nn.Module
    output_module: nn.Module
    n_heads: int
    value_rows: Optional[Tuple[int, int]] = None
    ffn_in_module: Optional[nn.Module] = None
    ffn_out_module: Optional[nn.Module] = None
    column_sums_module: Optional[ColumnSums] = None

    def __post_init__(self):
        if (self.probs_module is None) == (self.column_sums_module is None):
            raise ValueError("a SprintBlock needs exactly one of probs_module and column_sums_module")

    def value_weight(self):
        """``[H, d_v, d_in]``."""
        weight = self.value_module.weight  # [rows, d_in]
        if self.value_rows is not None:
            weight = weight[self.value_rows[0] : self.value_rows[1]]
        return weight.reshape(self.n_heads, -1, weight.size(-1))  # [H, d_v, d_in]

    def output_weight(self):
        return self.output_module.weight.unsqueeze(0)  # [1, d, H * d_v]

    def ffn_weights(self):
        return self.ffn_in_module.weight.unsqueeze(0), self.ffn_out_module.weight.unsqueeze(0)

    @property
    def has_ffn(self):
        return self.ffn_in_module is not None and self.ffn_out_module is not None


class _Targets:
    """Plain holder for the backbone's modules, so that they are not registered twice as submodules."""

    def __init__(self, blocks, item_embedding):
        self.blocks = list(blocks)
        self.item_embedding = item_embedding


def check_sprint_config(config):
    """Validate the SPRINT options; raise ``ValueError`` naming the key and the allowed values."""
    import math

    for key in ("sprint_attn_weight", "sprint_ffn_weight", "sprint_emb_weight"):
        value = config[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{key} must be a number >= 0 (finite; 0 switches the term off), got {value!r}")
    tau = config["sprint_temperature"]
    if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"sprint_temperature must be a number > 0 (finite), got {tau!r}")
    compile_mode = config["sprint_compile"]
    if compile_mode not in SPRINT_COMPILE_MODES:
        raise ValueError(f"sprint_compile must be one of {', '.join(SPRINT_COMPILE_MODES)}, got {compile_mode!r}")
    iters = config["sprint_power_iters"]
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 1:
        raise ValueError(f"sprint_power_iters must be an integer >= 1, got {iters!r}")
    power_impl = _configured_power_impl(config)
    if power_impl not in POWER_IMPLS:
        raise ValueError(f"sprint_power_impl must be one of {', '.join(POWER_IMPLS)}, got {power_impl!r}")
    in_backbone_graph = _configured(config, "sprint_in_backbone_graph", True)
    if not isinstance(in_backbone_graph, bool):
        raise ValueError(f"sprint_in_backbone_graph must be True or False, got {in_backbone_graph!r}")
    every = _configured_every(config)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"sprint_every must be an integer >= 1 (1: every training step, the paper's; k: every k-th "
                         f"step, weighted by k), got {every!r}")


def _configured(config, key, default):
    """``config[key]``, ``default`` where unset (a config without the key, e.g. a plain dict, or a value of None)."""
    value = config[key] if key in config else None
    return default if value is None else value


def _configured_every(config):
    return _configured(config, "sprint_every", 1)


def _configured_power_impl(config):
    return _configured(config, "sprint_power_impl", "auto")


def auto_power_impl(layout, weights, on_gpu):
    """``sprint_power_impl: auto`` resolved: ``triton`` for weights on a GPU the kernels were built for (``on_gpu``:
    :func:`kernels_gpu`) that they can run on (Triton installed, float32 / float64, contiguous, no rows read twice),
    else ``torch`` (on the CPU at once, without asking the kernels: Triton's interpreter would run them there,
    slowly)."""
    if on_gpu and unusable_reason(layout_matrices(layout, weights), weights) is None:
        return "triton"
    return "torch"


@functools.lru_cache(maxsize=None)
def kernels_gpu(device):
    """Whether ``device`` is a CUDA device of compute capability 8.0 or more (Ampere on), where ``auto`` uses the
    Triton power iteration; measured on Hopper (H100, H200). Older GPUs keep the batched operators unless
    ``sprint_power_impl: triton`` asks for the kernels."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def _estimator(weights, n_iters, generator):
    # weights: [G, m, n]
    return SpectralNormEstimator(weights.size(0), weights.size(1), weights.size(2), n_iters, generator)


class SPRINTRegularizer(nn.Module):
    r"""SPRINT's spectral regulariser over a list of transformer blocks and an item-embedding table.

    Usage inside a model (see :class:`SPRINT`): call :meth:`observe` with the masks of the batch before the
    backbone's forward pass, then :meth:`add_to` with the recommendation loss.

    The power iterations of all layers run batched, one per kind of matrix (``value``: the ``L*H`` per-head
    :math:`W_{V,h}`, ``output``: the ``L`` :math:`W_O`, ``ffn_in``/``ffn_out``: the ``L`` :math:`W_1`/:math:`W_2`,
    ``embedding``: :math:`E`), so the cost in kernel launches does not grow with depth. This needs blocks of
    one shape, as in every stacked transformer. With ``sprint_power_impl: triton`` (``auto``'s choice on CUDA) every
    kind runs in the same few
    Triton kernels (:mod:`recbole_sprint.model.fused_power_iteration`).

    Args:
        config: RecBole config with ``sprint_attn_weight``, ``sprint_ffn_weight``, ``sprint_emb_weight``,
            ``sprint_temperature``, ``sprint_power_iters``, ``sprint_every`` (unset: 1), ``sprint_power_impl`` (unset:
            ``auto``).
        blocks: one :class:`SprintBlock` per layer.
        item_embedding: the item table :math:`E` (``nn.Embedding``), including the padding row.
    """

    def __init__(self, config, blocks: List[SprintBlock], item_embedding: nn.Embedding):
        super().__init__()
        check_sprint_config(config)
        self.attn_weight = float(config["sprint_attn_weight"])
        self.ffn_weight = float(config["sprint_ffn_weight"])
        self.emb_weight = float(config["sprint_emb_weight"])
        self.temperature = float(config["sprint_temperature"])
        self.power_iters = int(config["sprint_power_iters"])
        self.every = _configured_every(config)
        self.power_impl = _configured_power_impl(config)
        if not blocks:
            raise ValueError("SPRINT needs at least one transformer block")
        if len({block.n_heads for block in blocks}) != 1:
            raise ValueError("SPRINT needs blocks with one number of heads")
        self.has_ffn = all(block.has_ffn for block in blocks)
        if self.ffn_weight > 0 and not self.has_ffn:
            raise ValueError(
                "sprint_ffn_weight > 0 but the backbone's blocks have no feed-forward network; set it to 0 (HSTU: or "
                "hstu_ffn: True)"
            )
        self.n_layers = len(blocks)
        self.n_heads = blocks[0].n_heads
        self.targets = _Targets(blocks, item_embedding)

        # A private generator: building the buffers must not move the global RNG, or a SPRINT model with
        # all weights 0 would draw different dropout masks from its backbone.
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.value = _estimator(torch.cat([b.value_weight() for b in blocks]), self.power_iters, generator)
            self.output = _estimator(torch.cat([b.output_weight() for b in blocks]), self.power_iters, generator)
            if self.has_ffn:
                pairs = [block.ffn_weights() for block in blocks]
                self.ffn_in = _estimator(torch.cat([w1 for w1, _ in pairs]), self.power_iters, generator)
                self.ffn_out = _estimator(torch.cat([w2 for _, w2 in pairs]), self.power_iters, generator)
            self.embedding = _estimator(item_embedding.weight.unsqueeze(0), self.power_iters, generator)

        self._compile_terms(config["sprint_compile"])
        self.in_backbone_graph = _configured(config, "sprint_in_backbone_graph", True)
        self._included = None  # the terms' parts and new start vectors replayed from the backbone's graphs
        self._query_weights = None  # [B, n] float: 1 for a valid query row, 0 for padding
        self._key_mask = None  # [B, n] bool
        self._column_sums: List[Optional[torch.Tensor]] = [None] * self.n_layers  # per layer: [B, H, n]
        self._epoch_parts = None  # running sum of (rec, attn, ffn, emb) over the steps of an epoch, on device
        self._epoch_steps = 0
        self._step = 0  # training steps seen (add_to calls); the terms run on steps with _step % every == 0
        self._column_sums_modules = []
        if self.attn_weight > 0:
            for index, block in enumerate(blocks):
                if block.column_sums_module is not None:
                    block.column_sums_module.wanted = True
                    block.column_sums_module.register_forward_hook(self._column_sums_hook(index))
                    self._column_sums_modules.append(block.column_sums_module)
                else:
                    block.probs_module.register_forward_hook(self._attention_hook(index))

    def _compile_terms(self, mode):
        """``sprint_compile``: ``none`` computes the terms eagerly; ``default`` compiles them (power iterations
        included) into one graph with ``torch.compile`` (fused kernels: fewer operator calls in a launch-bound
        step); ``aot_eager`` traces them without generating code (a check of the tracing, for tests);
        ``cuda_graph`` records their forward and their backward as two CUDA graphs (:meth:`_graphed_terms`), each
        replayed with one launch; ``inductor_cuda_graph`` records Inductor's kernels of them (``torch.compile``, one
        compilation per batch shape) the same way, where ``cuda_graph`` records one kernel per operator. The per-layer
        column sums (forward hooks) stay eager in every mode.

        ``torch.compile``'s ``reduce-overhead`` (its own CUDA graphs) is not offered: on the H100 it failed, because a
        step's new power-iteration vectors are outputs of the graph, which its next replay overwrites while they are
        still stored as the next start vectors. ``cuda_graph`` passes the start vectors as inputs instead, which the
        replay copies into the graph's own input tensors before it overwrites its outputs."""
        self._terms = self._eager_terms
        self._graphs = {}  # cuda_graph: the recorded terms per input signature (layout, shapes, dtypes)
        self._compiled_graphs = mode == "inductor_cuda_graph"
        self._graph_mode = mode in SPRINT_GRAPH_MODES
        self._recorded_terms = sprint_terms  # the terms inside the backbone's graphs (terms_with_backbone)
        if self._compiled_graphs:
            self._recorded_terms = compiled_sprint_terms(INDUCTOR_GRAPH_BACKEND, dynamic=False)
        if mode in SPRINT_GRAPH_MODES:
            self._terms = self._graphed_terms
        elif mode != "none":  # default, aot_eager
            backend = "aot_eager" if mode == "aot_eager" else "inductor"
            self._terms = functools.partial(self._eager_terms,
                                            terms=compiled_sprint_terms(backend))

    @property
    def enabled(self):
        return self.attn_weight > 0 or self.ffn_weight > 0 or self.emb_weight > 0

    @property
    def active(self):
        """Whether the coming training step computes the terms (always, unless ``sprint_every`` > 1)."""
        return self._step % self.every == 0

    # -- attention statistics, collected during the backbone's forward pass -------------------------
    def observe(self, query_mask, key_mask):
        """Set the masks of the coming forward pass (``[B, n]`` bool each)."""
        self._query_weights = query_mask.float()
        self._key_mask = key_mask
        self._column_sums = [None] * self.n_layers

    def _attention_hook(self, index):
        # Only the column sums are taken per layer; the soft maximum runs once for all layers in
        # attention_term (per-layer small ops cost host time that a GPU step of a small model cannot hide).
        def hook(module, inputs, probs):
            if self.training and self._query_weights is not None:
                self._column_sums[index] = attention_column_sums(probs, self._query_weights)  # [B, H, n]

        return hook

    def _column_sums_hook(self, index):
        def hook(module, inputs, column_sums):  # [B, H, n], computed by the attention itself
            if self.training and self._query_weights is not None:
                self._column_sums[index] = column_sums

        return hook

    def _collected_column_sums(self):
        missing = [index for index, sums in enumerate(self._column_sums) if sums is None]
        if missing:
            raise RuntimeError(
                f"SPRINT saw no attention matrix for layer {missing[0]} in this forward pass: call "
                "observe() before the backbone's forward, in training mode (an attention that provides its column "
                "sums through a ColumnSums module computes them only when the regulariser wants them)"
            )
        return list(self._column_sums)  # L x [B, H, n]

    def soft_max(self):
        r"""``[L, H]``: :math:`\tilde S_h` of every layer, from the column sums of the last training forward pass."""
        return soft_max_columns(torch.stack(self._collected_column_sums()), self._key_mask, self.temperature)

    # -- the terms -----------------------------------------------------------------------------------
    # Everything after the backbone's forward pass is one function of tensors (sprint_terms: the weights, the column
    # sums, the start vectors), which returns the new vectors instead of storing them: with ``sprint_compile`` it is
    # one graph without side effects (see _compile_terms), and forward() stores them.
    def layout(self, weights=None):
        """The :class:`TermsLayout` of the enabled terms, positions into ``weights`` (default:
        :meth:`regularised_parameters`); made anew on each call: the terms' weights may be changed between steps."""
        weights = self.regularised_parameters() if weights is None else weights
        index = {id(weight): position for position, weight in enumerate(weights)}
        blocks = self.targets.blocks
        attn, ffn = self.attn_weight > 0, self.ffn_weight > 0
        layout = TermsLayout(
            attn_weight=self.attn_weight, ffn_weight=self.ffn_weight, emb_weight=self.emb_weight,
            temperature=self.temperature, n_iters=self.power_iters, n_heads=self.n_heads,
            value=tuple((index[id(block.value_module.weight)], *(block.value_rows or (None, None)))
                        for block in blocks) if attn else (),
            output=tuple(index[id(block.output_module.weight)] for block in blocks) if attn else (),
            ffn_in=tuple(index[id(block.ffn_in_module.weight)] for block in blocks) if ffn else (),
            ffn_out=tuple(index[id(block.ffn_out_module.weight)] for block in blocks) if ffn else (),
            embedding=index[id(self.targets.item_embedding.weight)] if self.emb_weight > 0 else None,
            names=tuple(self.estimator_names()),
            power_impl=self.power_impl,
        )
        if layout.power_impl == "auto":  # the kernels where they run, silently the batched operators elsewhere
            layout = layout._replace(power_impl=auto_power_impl(layout, weights, kernels_gpu(weights[0].device)))
        elif layout.power_impl == "triton":
            reason = unusable_reason(layout_matrices(layout, weights), weights)
            if reason is not None:  # e.g. on the CPU: the batched operators instead, said once
                if not getattr(self, "_warned_power_impl", False):
                    self._warned_power_impl = True
                    warnings.warn(f"sprint_power_impl: triton cannot run here ({reason}); SPRINT's power iterations "
                                  "run as batched PyTorch operators (sprint_power_impl: torch)", RuntimeWarning)
                layout = layout._replace(power_impl="torch")
        return layout

    def _terms_inputs(self):
        """``(layout, starts, weights)`` for :func:`sprint_terms`: the start vectors are the stored ``v``."""
        weights = self.regularised_parameters()
        layout = self.layout(weights)
        return layout, [getattr(self, name).v for name in layout.names], weights

    def _eager_terms(self, column_sums, key_mask, terms=sprint_terms):
        """``(attn, ffn, emb, vectors)`` of :func:`sprint_terms` (or of ``terms``, its compiled form)."""
        layout, starts, weights = self._terms_inputs()
        return terms(layout, column_sums, key_mask, starts, weights)

    def estimator_names(self):
        """The power-iteration estimators the enabled terms use, in a fixed order."""
        return (["value", "output"] * (self.attn_weight > 0) + ["ffn_in", "ffn_out"] * (self.ffn_weight > 0)
                + ["embedding"] * (self.emb_weight > 0))

    def regularised_parameters(self):
        """The backbone's parameters that the enabled terms read (each once)."""
        modules = []
        for block in self.targets.blocks:
            modules += [block.value_module, block.output_module] * (self.attn_weight > 0)
            modules += [block.ffn_in_module, block.ffn_out_module] * (self.ffn_weight > 0)
        modules += [self.targets.item_embedding] * (self.emb_weight > 0)
        return list({id(module.weight): module.weight for module in modules}.values())

    # -- sprint_compile: cuda_graph, inductor_cuda_graph -----------------------------------------------
    def _graphed_terms(self, column_sums, key_mask):
        """:meth:`_eager_terms` replayed from CUDA graphs: the first step with a new input signature (the last, smaller
        batch of an epoch is a second one; new weights of the terms another) records the terms' forward and backward
        (a few eager runs, then the recording); every later step copies its inputs (stacked column sums, key mask,
        start vectors) into the graph's own, replays one graph forward and one backward, and gets the graph's own
        output tensors back, which stay valid until its next replay. Off CUDA, or under autocast with its weight cache
        on, the terms run eagerly (one warning)."""
        layout, starts, weights = self._terms_inputs()
        attention = [torch.stack(column_sums), key_mask] if layout.attn_weight > 0 else []
        args = (*attention, *starts)
        if not cuda_graphs_usable(args[0]):
            if not getattr(self, "_warned_no_graphs", False):
                self._warned_no_graphs = True
                mode = "inductor_cuda_graph" if self._compiled_graphs else "cuda_graph"
                warnings.warn(f"sprint_compile: {mode} records CUDA graphs, which need a CUDA device (and no "
                              "autocast weight cache); SPRINT's terms run eagerly here", RuntimeWarning)
            return sprint_terms(layout, column_sums, key_mask, starts, weights)
        signature = (layout, *((tuple(arg.shape), arg.dtype, arg.requires_grad) for arg in (*args, *weights)))
        graphed = self._graphs.get(signature)
        if graphed is None:
            terms = GraphedTerms(layout, len(weights), compiled=self._compiled_graphs)
            graphed = self._graphs[signature] = record_graphs(terms, args, weights)
        attn, ffn, emb, flat = graphed(*args, *weights)
        return attn, ffn, emb, unpacked_vectors(self.vector_shapes(layout.names), flat)

    def vector_shapes(self, names):
        """``{name: (u's shape, v's shape)}`` of the estimators ``names``, in order (:func:`unpacked_vectors`)."""
        return {name: (getattr(self, name).u.shape, getattr(self, name).v.shape) for name in names}

    # -- backbone_compile: cuda_graph with sprint_compile a graph mode: the terms in the backbone's graphs ------------
    def terms_with_backbone(self):
        """Whether this training step's terms are recorded in (and replayed from) the backbone's graphs, where the
        backbone has them (``backbone_compile: cuda_graph``): with ``sprint_compile`` a graph mode and
        ``sprint_in_backbone_graph`` (default ``True``), on a step that computes them. The backbone's forward and
        backward graphs then hold the terms too: no graphs of their own, no copy of the column sums into them, the
        weights' two gradients summed inside the backward graph."""
        return self._graph_mode and self.in_backbone_graph and self.enabled and self.training and self.active

    def graph_starts(self):
        """The power iterations' start vectors (the stored ``v`` of each estimator), inputs of the backbone's graphs."""
        return [getattr(self, name).v for name in self.estimator_names()]

    def recorded_terms(self, rec_loss, starts):
        """Inside the backbone's recorded forward, after its loss: ``(total, (parts, vectors))``, the
        loss with the weighted terms (``sprint_every: k``: k-fold), the ``[4]`` parts ``(rec, attn, ffn, emb)``
        detached, and the new vectors of the estimators of :meth:`estimator_names` packed into one tensor
        (:func:`packed_vectors`; :func:`sprint_terms` from ``starts``, Inductor's code of it with ``sprint_compile:
        inductor_cuda_graph``)."""
        layout, _, weights = self._terms_inputs()
        column_sums = self._collected_column_sums() if layout.attn_weight > 0 else None
        attn, ffn, emb, vectors = self._recorded_terms(layout, column_sums, self._key_mask, starts, weights)
        total, parts = self._total_and_parts(rec_loss, attn, ffn, emb)
        return total, (parts, packed_vectors(layout.names, vectors))

    def include(self, extras):
        """After a replay of the backbone's graphs: keep the replayed ``(parts, vectors)`` for :meth:`add_to`."""
        parts, flat = extras
        self._included = parts, unpacked_vectors(self.vector_shapes(self.estimator_names()), flat)

    def forward(self):
        """The weighted terms ``(attn, ffn, emb)`` of the last training forward pass; a disabled term is 0."""
        column_sums = self._collected_column_sums() if self.attn_weight > 0 else None
        attn, ffn, emb, vectors = self._terms(column_sums, self._key_mask)
        self._end_step(vectors)
        return attn, ffn, emb

    def _end_step(self, vectors):
        """Store the new power-iteration vectors ``{name: (u, v)}``; forget the step's masks and column sums."""
        for name, (u, v) in vectors.items():
            getattr(self, name).store(u, v)
        self._query_weights = self._key_mask = None
        self._column_sums = [None] * self.n_layers

    def _total_and_parts(self, rec_loss, attn, ffn, emb):
        """``(rec_loss + terms, [4] parts (rec, attn, ffn, emb) detached)``, the terms k-fold with
        ``sprint_every: k``."""
        if self.every > 1:
            attn, ffn, emb = self.every * attn, self.every * ffn, self.every * emb
        parts = torch.stack([rec_loss.detach().float(), attn.detach(), ffn.detach(), emb.detach()])
        return rec_loss + attn + ffn + emb, parts

    def add_to(self, rec_loss):
        """``rec_loss + attn + ffn + emb`` in training mode with SPRINT on, else ``rec_loss`` unchanged; with
        ``sprint_every: k`` > 1, ``rec_loss + k * (attn + ffn + emb)`` on every k-th step and ``rec_loss`` on the others.

        The parts are accumulated on the device for the epoch log (:meth:`pop_epoch_parts`) instead of being
        returned as a tuple, which would cost RecBole's trainer one host synchronisation per part and step.
        """
        if not (self.enabled and self.training):
            return rec_loss
        active = self.active
        self._step += 1
        self._epoch_steps += 1
        if self.every > 1:
            self._want_column_sums(self.active)  # for the coming step
        if active and self._included is not None:  # the terms ran in the backbone's graphs: rec_loss holds them
            (parts, vectors), self._included = self._included, None
            self._end_step(vectors)
            total = rec_loss
        elif active:
            total, parts = self._total_and_parts(rec_loss, *self())
        else:  # a lazy step: the recommendation loss alone
            parts, total = F.pad(rec_loss.detach().float().reshape(1), (0, 3)), rec_loss
        self._epoch_parts = parts if self._epoch_parts is None else self._epoch_parts + parts
        return total

    def _want_column_sums(self, wanted):
        """An attention that computes its own column sums does so only on the steps that use them."""
        for module in self._column_sums_modules:
            module.wanted = wanted

    def pop_epoch_parts(self):
        """Mean per step of ``(rec, attn, ffn, emb)`` since the last call (``None`` if SPRINT did not run); with
        ``sprint_every: k`` the terms count k-fold on the steps that computed them and 0 on the others, so the parts
        still add up to the mean training loss per step."""
        if self._epoch_parts is None:
            return None
        means = (self._epoch_parts / self._epoch_steps).tolist()
        self._epoch_parts, self._epoch_steps = None, 0
        return dict(zip(SPRINT_LOSS_NAMES, means))

    @torch.no_grad()
    def spectral_norms(self):
        """Exact spectral norms of every regularised matrix (a monitor; not used in training)."""
        norms = {"item_embedding": torch.linalg.matrix_norm(self.targets.item_embedding.weight.float(), 2).item()}
        for index, block in enumerate(self.targets.blocks):
            norms[f"layer{index}.value"] = torch.linalg.matrix_norm(block.value_weight().float(), 2).tolist()
            norms[f"layer{index}.output"] = torch.linalg.matrix_norm(block.output_weight()[0].float(), 2).item()
            if block.has_ffn:
                ffn_in, ffn_out = block.ffn_weights()
                norms[f"layer{index}.ffn_in"] = torch.linalg.matrix_norm(ffn_in[0].float(), 2).item()
                norms[f"layer{index}.ffn_out"] = torch.linalg.matrix_norm(ffn_out[0].float(), 2).item()
        return norms


class SPRINT:
    """Mixin that adds the SPRINT regulariser to a RecBole sequential transformer.

    A SPRINT model is ``class XSPRINT(SPRINT, X)``; it calls :meth:`init_sprint` at the end of ``__init__``
    and implements :meth:`sprint_blocks` (and, if needed, :meth:`sprint_masks`). Defaults for its options
    live in ``properties/model/SPRINT.yaml``.
    """

    def init_sprint(self, config):
        self.sprint = SPRINTRegularizer(config, self.sprint_blocks(), self.item_embedding)

    def sprint_blocks(self) -> List[SprintBlock]:
        raise NotImplementedError

    def sprint_masks(self, item_seq):
        """``(query_mask, key_mask)``, each ``[B, n]`` bool; default: non-padding positions for both."""
        valid = item_seq != 0
        return valid, valid

    def forward(self, item_seq, *args, **kwargs):
        if self._observes_attention():
            self.sprint.observe(*self.sprint_masks(item_seq))
        return super().forward(item_seq, *args, **kwargs)

    def _observes_attention(self):
        """Whether this training forward collects the attention column sums (the attention term, on an active step)."""
        return self.sprint.training and self.sprint.attn_weight > 0 and self.sprint.active

    # -- backbone_compile: cuda_graph (recbole_sprint.model.graphs): SPRINT's terms in the backbone's graphs, or the
    # column sums as graph outputs for the terms' own graphs (or eager terms) ---------------------------------------
    def backbone_graph_key(self):
        # sprint_every > 1: steps with and without column sums (and terms) differ
        return self._observes_attention(), self.sprint.terms_with_backbone()

    def backbone_graph_inputs(self):
        return self.sprint.graph_starts() if self.sprint.terms_with_backbone() else ()

    def backbone_graph_outputs(self):
        """The column sums the hooks collected in the recorded forward, ``L x [B, H, n]``."""
        return tuple(self.sprint._collected_column_sums()) if self._observes_attention() else ()

    def backbone_graph_loss(self, loss, inputs):
        """With the terms in the backbone's graphs: the loss plus the terms, their parts and the new start vectors
        (:meth:`SPRINTRegularizer.recorded_terms`); else the loss and the column sums."""
        if self.sprint.terms_with_backbone():
            return self.sprint.recorded_terms(loss, inputs)
        return loss, self.backbone_graph_outputs()

    def restore_backbone_graph_outputs(self, fields, extras):
        """What the recorded forward's Python did for the regulariser, again for this step: the replayed terms'
        parts and vectors, or its masks and the replayed column sums in place of the hooks' (the hooks do not run in
        a replay)."""
        if self.sprint.terms_with_backbone():
            self.sprint.include(extras)
        elif extras:
            self.sprint.observe(*self.sprint_masks(fields[self.ITEM_SEQ]))
            self.sprint._column_sums = list(extras)

    def calculate_loss(self, interaction):
        return self.sprint.add_to(super().calculate_loss(interaction))


def recbole_transformer_blocks(encoder) -> List[SprintBlock]:
    """:class:`SprintBlock` for each layer of RecBole's ``TransformerEncoder`` (SASRec, BERT4Rec)."""
    blocks = []
    for layer in encoder.layer:
        attention = layer.multi_head_attention
        blocks.append(
            SprintBlock(
                probs_module=attention.attn_dropout,  # output: softmax probabilities after dropout, applied to V
                value_module=attention.value,
                output_module=attention.dense,
                n_heads=attention.num_attention_heads,
                ffn_in_module=layer.feed_forward.dense_1,
                ffn_out_module=layer.feed_forward.dense_2,
            )
        )
    return blocks

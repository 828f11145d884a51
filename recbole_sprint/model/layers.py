r"""Building blocks of the plugin's own backbones, re-implemented from their descriptions, dense and right-padded
(RecBole's layout: the valid items of a sequence are positions ``0 .. len-1``).

HSTU (Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for Generative
Recommendations", ICML 2024), as in the authors' *research* model (facebookresearch/generative-recommenders,
``research/modeling/sequential/hstu.py``; spec: ``../shared/spec/anchors.md`` section 1.2):

* :func:`time_bucket`: ``clamp(floor(ln(max(|dt|, 1)) / 0.301), 0, num_buckets)``; :func:`relative_time_buckets`
  applies it to every (query, key) pair once per batch, and every layer's bias table reads the result.
* :class:`RelativeBucketedTimeAndPositionBias`: ``rab[b, i, j] = w_pos[N-1 + j - i] + w_ts[bucket(tq[b,i] - tk[b,j])]``.
* :class:`HSTULayer`: one HSTU block (pre-LayerNorm, fused U/V/Q/K projection, pointwise SiLU attention).

SASRec++ (the SPRINT paper's backbone, a Llama-style causal decoder over item ids; spec:
``../shared/spec/sasrecpp.md``, written from the description, not from the authors' GPL code):

* :class:`RMSNorm`: ``x * rsqrt(mean(x^2) + eps) * g`` in float32, learned scale ``g``, no bias.
* :func:`rotary_cos_sin`, :func:`rotate_half`, :func:`apply_rotary`: RoPE, the half-split rotation.
* :class:`RotarySelfAttention`: q/k/v/o without bias, RoPE on q and k, masked softmax, dropout on the
  probabilities (the matrix applied to V, seen by SPRINT's hook), output projection; ``attention_impl="fused"``
  computes the same without the ``n x n`` matrix (:mod:`recbole_sprint.model.fused_attention`).
* :class:`SwiGLUFeedForward`: ``W_down(SiLU(W_gate x) * W_up x)``, no biases.
* :class:`SASRecPPBlock`: ``x + Attn(RMSNorm(x))``, then ``x + FFN(RMSNorm(x))``.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_sprint.model.fused_attention import KEEP_MASKS, fused_attention
from recbole_sprint.model.sprint import ColumnSums, attend_with_column_sums

ATTENTION_IMPLS = ("dense", "fused")
TIME_BUCKET_DIVISOR = 0.301  # natural log divided by 0.301 (~ log10(2)), as in the research code


def time_bucket(delta, num_buckets=128):
    r"""Bucket index of a time gap: :math:`\mathrm{clamp}(\lfloor \ln(\max(|\Delta|, 1)) / 0.301 \rfloor, 0, B)`.

    Args:
        delta: time gaps (seconds), any shape, any float dtype.
        num_buckets: ``B``; indices lie in ``[0, B]`` (``B + 1`` buckets).

    Returns:
        long tensor of the same shape. Examples: 1 s -> 0, 60 s -> 13, 1 h -> 27, 1 day -> 37.
    """
    delta = delta.double().abs().clamp_min(1.0)  # float64: exact floor at bucket boundaries
    buckets = torch.floor(torch.log(delta) / TIME_BUCKET_DIVISOR).clamp(0, num_buckets)  # clamp before .long(): inf
    return buckets.long()


def relative_time_buckets(query_times, key_times, num_buckets):
    """``[B, n, n]``: ``bucket(tq[b, i] - tk[b, j])`` for query times and key times ``[B, n]``."""
    delta = query_times[:, :, None].double() - key_times[:, None, :].double()  # [B, n, n]
    return time_bucket(delta, num_buckets)


def lookup(weights, index):
    """``weights[index]`` for a 1-D parameter, through ``F.embedding``.

    Same values as indexing, but the backward is CUDA's embedding backward, which splits heavily repeated
    indices across threads; plain indexing backward (``index_put_`` with accumulate) adds the ~B n^2 / 129
    repeats of each time bucket serially and made HSTU ~30x slower than SASRec on the GPU.
    """
    return F.embedding(index, weights.unsqueeze(1)).squeeze(-1)


def truncated_normal_(tensor, std):
    """In-place normal(0, std) truncated at +-2 std (the research code's ``truncated_normal``)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


class RelativeBucketedTimeAndPositionBias(nn.Module):
    r"""HSTU's relative attention bias, one instance per block, shared by all heads.

    .. math:: \mathrm{rab}_{b,i,j} = w^{pos}_{N-1+j-i} + w^{ts}_{\mathrm{bucket}(t^q_{b,i} - t^k_{b,j})}

    Args:
        max_seq_length: ``N``, the padded length (``2N - 1`` relative positions).
        num_buckets: number of time buckets ``B`` (``B + 1`` time weights).
        use_time: ``False`` keeps only the position term (no timestamps needed).
        initializer_range: std of the normal init of both weight vectors (research: 0.02).
    """

    def __init__(self, max_seq_length, num_buckets, use_time, initializer_range):
        super().__init__()
        self.max_seq_length = max_seq_length
        self.num_buckets = num_buckets
        self.use_time = use_time
        self.position_weight = nn.Parameter(torch.empty(2 * max_seq_length - 1).normal_(0.0, initializer_range))
        if use_time:
            self.time_weight = nn.Parameter(torch.empty(num_buckets + 1).normal_(0.0, initializer_range))
        index = torch.arange(max_seq_length)
        # [N, N], j - i + N - 1; its top-left [n, n] block serves a length-n batch (not saved in the state dict)
        self.register_buffer("relative_index", index[None, :] - index[:, None] + max_seq_length - 1, persistent=False)

    def position_term(self, n):
        """``[n, n]``: ``w_pos[N-1 + j - i]``."""
        return lookup(self.position_weight, self.relative_index[:n, :n])

    def forward(self, n, time_buckets=None):
        """``[B, n, n]`` (or ``[1, n, n]`` without time).

        Args:
            n: sequence length (<= ``max_seq_length``).
            time_buckets: ``[B, n, n]`` from :func:`relative_time_buckets` (computed once per sequence batch and
                shared by the layers), or ``None`` without time.
        """
        bias = self.position_term(n).unsqueeze(0)  # [1, n, n]
        if self.use_time:
            bias = bias + lookup(self.time_weight, time_buckets)
        return bias


class HSTULayer(nn.Module):
    r"""One HSTU block (research variant, ``normalization="rel_bias"``, no gating concat), optionally followed by
    a SwiGLU feed-forward block.

    .. math::

        \bar x = \mathrm{LN}(x),\quad [U, V, Q, K] = \mathrm{SiLU}(\bar x W_{uvqk}),\quad
        P_h = \mathrm{SiLU}(Q_h K_h^\top + \mathrm{rab}) / n \odot M_{causal},\quad
        x' = x + W_o\,\mathrm{Dropout}(U \odot \mathrm{LN}([P_h V_h]_h))

    With ``inner_size`` (the SPRINT paper's HSTU, whose GenRec code adds this block; the original HSTU has none):
    then :math:`x'' = x' + \mathrm{SwiGLU}(\mathrm{RMSNorm}(x'))`, SASRec++'s feed-forward sub-block
    (:class:`SwiGLUFeedForward`, weights normal(0, ``initializer_range``)); ``feed_forward`` is ``None`` without it.

    Both LayerNorms are affine-free. ``P`` passes through :attr:`attn_dropout` (``p = 0`` by default, as the
    research code has no attention dropout) so that a forward hook sees the matrix actually applied to ``V``.

    Args:
        hidden_size: ``d``; n_heads: ``H`` (must divide ``d``; per-head ``d_qk = d_v = d / H``).
        max_seq_length, num_buckets, time_bias: see :class:`RelativeBucketedTimeAndPositionBias`.
        linear_dropout_prob: dropout before ``W_o``; attn_dropout_prob: dropout on ``P``.
        layer_norm_eps: eps of both LayerNorms (research: 1e-6) and of the feed-forward block's RMSNorm;
        initializer_range: std of ``W_uvqk`` (and of the feed-forward weights).
        inner_size: width of the SwiGLU feed-forward block, or ``None`` (no block: the research HSTU).
    """

    def __init__(
        self,
        hidden_size,
        n_heads,
        max_seq_length,
        num_buckets,
        time_bias,
        linear_dropout_prob,
        attn_dropout_prob,
        layer_norm_eps,
        initializer_range,
        inner_size=None,
    ):
        super().__init__()
        if hidden_size % n_heads != 0:
            raise ValueError(f"n_heads ({n_heads}) must divide hidden_size ({hidden_size}) for HSTU")
        self.hidden_size = hidden_size
        self.n_heads = n_heads
        self.head_size = hidden_size // n_heads  # d_qk = d_v
        self.layer_norm_eps = layer_norm_eps
        inner = n_heads * self.head_size
        # rows [0, inner): U, [inner, 2 inner): V, [2 inner, 3 inner): Q, [3 inner, 4 inner): K
        self.uvqk = nn.Linear(hidden_size, 4 * inner, bias=False)
        nn.init.normal_(self.uvqk.weight, mean=0.0, std=initializer_range)
        self.relative_bias = RelativeBucketedTimeAndPositionBias(
            max_seq_length, num_buckets, time_bias, initializer_range
        )
        self.attn_dropout = nn.Dropout(attn_dropout_prob)
        self.linear_dropout = nn.Dropout(linear_dropout_prob)
        self.output = nn.Linear(inner, hidden_size)  # W_o, with bias (torch's default bias init)
        nn.init.xavier_uniform_(self.output.weight)
        self.ffn_norm = self.feed_forward = None
        if inner_size is not None:
            self.ffn_norm = RMSNorm(hidden_size, layer_norm_eps)
            self.feed_forward = SwiGLUFeedForward(hidden_size, inner_size)
            for projection in (self.feed_forward.gate_proj, self.feed_forward.up_proj, self.feed_forward.down_proj):
                nn.init.normal_(projection.weight, mean=0.0, std=initializer_range)

    @property
    def value_rows(self):
        """Rows of :attr:`uvqk`'s weight that form ``W_V`` (for SPRINT)."""
        inner = self.n_heads * self.head_size
        return inner, 2 * inner

    def attention_probs(self, q, k, causal_mask, rab):
        """``[B, H, n, n]``: ``SiLU(Q K^T + rab) / n``, causal entries only, after attention dropout."""
        n = q.size(1)
        scores = torch.einsum("bihd,bjhd->bhij", q, k) + rab.unsqueeze(1)  # [B, H, n, n]
        probs = F.silu(scores) / n * causal_mask  # causal_mask: [n, n] lower-triangular (float)
        return self.attn_dropout(probs)

    def forward(self, x, causal_mask, time_buckets=None):
        """``x [B, n, d]`` -> ``[B, n, d]``. ``causal_mask [n, n]`` float; ``time_buckets [B, n, n]`` or ``None``."""
        batch, n, _ = x.shape
        normed = F.layer_norm(x, (self.hidden_size,), eps=self.layer_norm_eps)  # [B, n, d]
        u, v, q, k = F.silu(self.uvqk(normed)).chunk(4, dim=-1)  # each [B, n, H * d_h]
        v, q, k = (t.view(batch, n, self.n_heads, self.head_size) for t in (v, q, k))  # [B, n, H, d_h]
        rab = self.relative_bias(n, time_buckets)  # [B or 1, n, n]
        probs = self.attention_probs(q, k, causal_mask, rab)  # [B, H, n, n]
        attn = torch.einsum("bhij,bjhd->bihd", probs, v).reshape(batch, n, -1)  # [B, n, H * d_h]
        attn = F.layer_norm(attn, (attn.size(-1),), eps=self.layer_norm_eps)
        x = x + self.output(self.linear_dropout(u * attn))  # [B, n, d]
        if self.feed_forward is None:
            return x
        return x + self.feed_forward(self.ffn_norm(x))


# ---------------------------------------------------------------------------------------------------
# SASRec++ (spec sasrecpp.md)
# ---------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    r"""Root-mean-square normalisation with a learned scale and no bias.

    .. math:: y = \frac{x}{\sqrt{\mathrm{mean}(x^2) + \epsilon}} \odot g

    The statistics and the product are computed in float32 whatever the input dtype; the result has the
    input's dtype. ``g`` (``weight``, ``[d]``) starts at 1.
    """

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x):
        """``[..., d] -> [..., d]``."""
        x32 = x.float()
        inverse_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # [..., 1]
        return (x32 * inverse_rms * self.weight.float()).to(x.dtype)


def rotary_cos_sin(seq_len, head_size, base=10000.0, device=None):
    r"""Cosines and sines of the rotary angles, ``(cos, sin)``, each ``[n, d_h]`` in float32.

    Frequency ``k`` (``0 <= k < d_h / 2``) turns position ``p`` by :math:`\theta_{p,k} = p \cdot
    \mathrm{base}^{-2k/d_h}`; the ``d_h / 2`` angles are repeated over both halves of the head
    (``[theta, theta]``), the layout :func:`apply_rotary` expects. Positions are the indices ``0 .. n-1``.
    """
    exponents = torch.arange(0, head_size, 2, dtype=torch.float32, device=device) / head_size  # [d_h/2]: 2k/d_h
    inverse_frequencies = 1.0 / (base**exponents)  # [d_h/2]
    positions = torch.arange(seq_len, dtype=torch.float32, device=device)  # [n]
    angles = positions[:, None] * inverse_frequencies[None, :]  # [n, d_h/2]
    angles = torch.cat([angles, angles], dim=-1)  # [n, d_h]
    return angles.cos(), angles.sin()


def rotate_half(x):
    """``[..., d_h]``: the halves ``(x1, x2)`` become ``(-x2, x1)``."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x, cos, sin):
    r"""Rotate each pair ``(x[k], x[k + d_h/2])`` of a head by its angle (the half-split RoPE).

    :math:`(x_1, x_2) \mapsto (x_1 \cos\theta - x_2 \sin\theta,\ x_2 \cos\theta + x_1 \sin\theta)`.

    Args:
        x: ``[B, H, n, d_h]`` queries or keys; cos, sin: ``[n, d_h]`` from :func:`rotary_cos_sin`.
    """
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


class RotarySelfAttention(nn.Module):
    r"""Multi-head self-attention with rotary positions, no biases.

    ``q, k, v = x W_q^T, x W_k^T, x W_v^T`` (each ``[d, d]``, split into ``H`` heads of ``d_h = d / H``), RoPE on
    ``q`` and ``k``, ``P = softmax(q k^T / sqrt(d_h) + mask)`` in float32, dropout on ``P`` (:attr:`attn_dropout`:
    its output is the matrix applied to ``V``, which SPRINT's forward hook reads), then ``W_o`` on the heads'
    concatenated outputs.

    ``attention_impl``: ``dense`` (the above, the ``[B, H, n, n]`` matrix in memory) or ``fused``
    (:func:`~recbole_sprint.model.fused_attention.fused_attention`: Triton kernels on CUDA, a block-wise PyTorch
    version elsewhere; no ``n x n`` matrix, right-padded sequences, dropout ``attn_dropout.p`` applied inside the
    kernels; ``keep_mask``, ``recompute`` or ``stored``: how its Triton kernels after the forward get the dropout
    keep mask, see :func:`~recbole_sprint.model.fused_attention.fused_attention`). Both hand SPRINT the column sums
    of the post-dropout matrix (over the valid queries) through :attr:`column_sums` (a
    :class:`~recbole_sprint.model.sprint.ColumnSums`), computed only in training when the regulariser asks; the dense
    path then computes ``P V`` and the sums in one autograd node
    (:func:`~recbole_sprint.model.sprint.attend_with_column_sums`), otherwise a plain ``P V``.
    """

    def __init__(self, hidden_size, n_heads, attn_dropout_prob, attention_impl="dense", keep_mask="recompute"):
        super().__init__()
        if attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, got {attention_impl!r}")
        if keep_mask not in KEEP_MASKS:
            raise ValueError(f"keep_mask must be one of {', '.join(KEEP_MASKS)}, got {keep_mask!r}")
        self.attention_impl = attention_impl
        self.keep_mask = keep_mask
        if hidden_size % n_heads != 0 or (hidden_size // n_heads) % 2 != 0:
            raise ValueError(
                f"n_heads ({n_heads}) must divide hidden_size ({hidden_size}) into heads of even size (RoPE rotates "
                "pairs of dimensions)"
            )
        self.n_heads = n_heads
        self.head_size = hidden_size // n_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)  # rows: H blocks of d_h (head h: h*d_h ...)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.attn_dropout = nn.Dropout(attn_dropout_prob)  # dense: applied here; fused: its p, inside the kernels
        self.column_sums = ColumnSums()  # SPRINT's column sums pass through here (no parameters, no state)

    def split_heads(self, x):
        """``[B, n, H * d_h] -> [B, H, n, d_h]``."""
        batch, n, _ = x.shape
        return x.view(batch, n, self.n_heads, self.head_size).transpose(1, 2)

    def merge_heads(self, x):
        """``[B, H, n, d_h] -> [B, n, H * d_h]``."""
        batch, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(batch, n, self.n_heads * self.head_size)

    def attention_probs(self, q, k, mask):
        """``[B, H, n, n]``: softmax over the allowed keys (``mask`` True), after dropout.

        A masked entry gets the dtype's lowest finite score, so its probability is exactly 0 in any row with an
        allowed key (a row without one, which RecBole's batches do not produce, becomes uniform, not NaN).
        """
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size)  # [B, H, n, n]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return self.attn_dropout(probs)

    def forward(self, x, cos, sin, mask):
        """``x [B, n, d]`` -> ``[B, n, d]``; ``cos``, ``sin`` ``[n, d_h]``; ``mask``: dense, ``[B, 1, n, n]`` bool
        (True: query i may attend to key j); fused, ``[B]`` valid lengths of the right-padded rows (causal + key
        padding)."""
        q = apply_rotary(self.split_heads(self.q_proj(x)), cos, sin)  # [B, H, n, d_h]
        k = apply_rotary(self.split_heads(self.k_proj(x)), cos, sin)  # [B, H, n, d_h]
        v = self.split_heads(self.v_proj(x))  # [B, H, n, d_h]
        if self.attention_impl == "fused":
            want_sums = self.training and self.column_sums.wanted
            dropout_p = self.attn_dropout.p if self.training else 0.0
            out, sums = fused_attention(q, k, v, mask, dropout_p=dropout_p, need_column_sums=want_sums,
                                        keep_mask=self.keep_mask)
            if want_sums:
                self.column_sums(sums)  # [B, H, n]: SPRINT's hook stores them
            return self.o_proj(self.merge_heads(out))  # [B, n, d]
        probs = self.attention_probs(q, k, mask)  # [B, H, n, n]
        if self.training and self.column_sums.wanted:  # SPRINT: column sums over the valid queries, from one node
            query_weights = mask.diagonal(dim1=-2, dim2=-1)[:, 0]  # [B, n]: query i is valid iff it may see key i
            out, sums = attend_with_column_sums(probs, v, query_weights)
            self.column_sums(sums)  # [B, H, n]: SPRINT's hook stores them
            return self.o_proj(self.merge_heads(out))  # [B, n, d]
        return self.o_proj(self.merge_heads(torch.matmul(probs, v)))  # [B, n, d]


class SwiGLUFeedForward(nn.Module):
    r"""SwiGLU: :math:`W_{down}\,(\mathrm{SiLU}(W_{gate} x) \odot W_{up} x)`, inner size ``inner_size``, no biases."""

    def __init__(self, hidden_size, inner_size):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, inner_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, inner_size, bias=False)
        self.down_proj = nn.Linear(inner_size, hidden_size, bias=False)

    def forward(self, x):
        """``[B, n, d] -> [B, n, d]`` (through ``[B, n, inner]``)."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SASRecPPBlock(nn.Module):
    r"""One pre-norm decoder block of SASRec++: :math:`x \leftarrow x + \mathrm{Attn}(\mathrm{RMSNorm}(x))`,
    then :math:`x \leftarrow x + \mathrm{FFN}(\mathrm{RMSNorm}(x))`.

    Parameters: ``4 d^2`` (q, k, v, o) ``+ 3 d * inner`` (gate, up, down) ``+ 2 d`` (the two norm scales).
    """

    def __init__(self, hidden_size, n_heads, inner_size, attn_dropout_prob, rms_norm_eps, attention_impl="dense",
                 keep_mask="recompute"):
        super().__init__()
        self.attention_norm = RMSNorm(hidden_size, rms_norm_eps)
        self.attention = RotarySelfAttention(hidden_size, n_heads, attn_dropout_prob, attention_impl, keep_mask)
        self.ffn_norm = RMSNorm(hidden_size, rms_norm_eps)
        self.feed_forward = SwiGLUFeedForward(hidden_size, inner_size)

    def forward(self, x, cos, sin, mask):
        """``x [B, n, d]`` -> ``[B, n, d]`` (see :meth:`RotarySelfAttention.forward` for the other arguments)."""
        x = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return x + self.feed_forward(self.ffn_norm(x))

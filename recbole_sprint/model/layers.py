r"""Building blocks of HSTU (Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential
Transducers for Generative Recommendations", ICML 2024), as in the authors' *research* model
(facebookresearch/generative-recommenders, ``research/modeling/sequential/hstu.py``; spec:
``../shared/spec/anchors.md`` section 1.2). Re-implemented from the description, dense and right-padded
(RecBole's layout: the valid items of a sequence are positions ``0 .. len-1``).

* :func:`time_bucket`: ``clamp(floor(ln(max(|dt|, 1)) / 0.301), 0, num_buckets)``; :func:`relative_time_buckets`
  applies it to every (query, key) pair once per batch, and every layer's bias table reads the result.
* :class:`RelativeBucketedTimeAndPositionBias`: ``rab[b, i, j] = w_pos[N-1 + j - i] + w_ts[bucket(tq[b,i] - tk[b,j])]``.
* :class:`HSTULayer`: one HSTU block (pre-LayerNorm, fused U/V/Q/K projection, pointwise SiLU attention).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

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
    r"""One HSTU block (research variant, ``normalization="rel_bias"``, no gating concat, no FFN).

    .. math::

        \bar x = \mathrm{LN}(x),\quad [U, V, Q, K] = \mathrm{SiLU}(\bar x W_{uvqk}),\quad
        P_h = \mathrm{SiLU}(Q_h K_h^\top + \mathrm{rab}) / n \odot M_{causal},\quad
        x' = x + W_o\,\mathrm{Dropout}(U \odot \mathrm{LN}([P_h V_h]_h))

    Both LayerNorms are affine-free. ``P`` passes through :attr:`attn_dropout` (``p = 0`` by default, as the
    research code has no attention dropout) so that a forward hook sees the matrix actually applied to ``V``.

    Args:
        hidden_size: ``d``; n_heads: ``H`` (must divide ``d``; per-head ``d_qk = d_v = d / H``).
        max_seq_length, num_buckets, time_bias: see :class:`RelativeBucketedTimeAndPositionBias`.
        linear_dropout_prob: dropout before ``W_o``; attn_dropout_prob: dropout on ``P``.
        layer_norm_eps: eps of both LayerNorms (research: 1e-6); initializer_range: std of ``W_uvqk``.
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
        return x + self.output(self.linear_dropout(u * attn))

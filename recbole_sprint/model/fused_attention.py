r"""Causal self-attention that never stores the ``n x n`` matrix and also returns its column sums (issue 25).

:func:`fused_attention` computes, for right-padded sequences (RecBole's layout: the valid items of row ``b`` are
positions ``0 .. len_b - 1``),

.. math::

    P_{ij} = \mathrm{softmax}_j\big(s\, q_i \cdot k_j + \mathrm{mask}_{ij}\big),\quad
    \tilde P = P \odot \frac{M}{1 - p},\quad O_i = \sum_j \tilde P_{ij} v_j,\quad
    c_j = \sum_i w_i \tilde P_{ij}

with ``s = 1/sqrt(d_h)``, key ``j`` allowed for query ``i`` iff ``j <= i`` and ``j < len_b`` (causal plus key
padding, as :meth:`SASRecPP.attention_mask`), ``M`` the attention-dropout keep mask (``p = 0``: no dropout),
``w_i = [i < len_b]`` the valid queries. ``c [B, H, n]`` are the column sums SPRINT's attention term needs
(:func:`recbole_sprint.model.sprint.attention_column_sums` of the dense matrix applied to ``V``), over the
post-dropout matrix, as the spec's regulariser (no deviation from ``../shared/spec/sprint.md`` section 1.2).

Two implementations of one algorithm (flash attention, block-wise with an online softmax):

* :class:`TritonAttention` (CUDA tensors, Triton installed): five kernels, nothing of size ``n x n`` in memory.
  Forward: ``O`` and the per-row log-sum-exp ``lse``; a second pass over the causal tiles, key block by key
  block, for ``c`` (only when asked: one extra ``Q K^T`` per tile). Backward: ``dO_i . O_i``, then ``dK, dV`` (key
  block outer loop), then ``dQ`` (query block outer loop); with a column-sum gradient, ``dQ`` first: its pass over
  the row's keys also gives ``E_i`` (below) and completes ``D_i``, which ``dK, dV`` then read (no pass of its own
  for ``E``); no atomics, deterministic.
* :class:`BlockwiseAttention`: the same algorithm in PyTorch (every other device; the reference the kernels are
  tested against; materialises one ``block x block`` tile at a time, plus the dropout mask when ``p > 0``).

Backward with the column-sum gradient ``g_j = dL/dc_j`` (derivation). With ``dO_i`` the output gradient,

.. math::

    \frac{\partial L}{\partial \tilde P_{ij}} = dO_i \cdot v_j + w_i g_j,\qquad
    dP_{ij} = \frac{M_{ij}}{1-p}\,\frac{\partial L}{\partial \tilde P_{ij}},\qquad
    dS_{ij} = P_{ij}\,(dP_{ij} - D_i),

    D_i = \sum_k P_{ik}\, dP_{ik} = \sum_k \tilde P_{ik}\,(dO_i \cdot v_k + w_i g_k)
        = dO_i \cdot O_i + w_i \sum_k \tilde P_{ik}\, g_k ,

and ``dQ_i = s sum_j dS_ij k_j``, ``dK_j = s sum_i dS_ij q_i``, ``dV_j = sum_i P~_ij dO_i``. So the column-sum
gradient is an extra term ``w_i g_j`` of ``dP~`` before the softmax Jacobian, and ``D_i`` gains
``w_i E_i`` with ``E_i = sum_k P~_ik g_k``, a sum over the row's keys (``P~ @ g``). The ``dQ`` kernel takes it in
its own pass over the row's keys, splitting ``dQ_i = s sum_j P_ij dP_ij k_j - s D_i sum_j P_ij k_j`` (two sums
accumulated apart, joined once ``D_i`` is known), so ``E`` costs one more ``P K`` product per tile there instead
of a pass with its own ``Q K^T``.

Attention dropout is applied inside the kernels: the keep mask of entry ``(b, h, i, j)`` is
``tl.rand(seed, (b H + h) n^2 + i n + j) >= p`` (Philox, 10 rounds unless ``RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS``
says otherwise: :func:`default_philox_rounds`; with ``RECBOLE_SPRINT_ATTN_PHILOX_VALUES=4`` four entries a Philox
call instead, :func:`default_philox_values`), recomputed identically by every kernel from one seed
drawn per call on the device from torch's generator (:func:`seed_tensor`: no host synchronisation, and a new draw on
every replay of a CUDA graph); with ``keep_mask="stored"`` (the models'
``attention_keep_mask: stored``) the forward kernel writes the mask it drew, one bit an entry (``B H n n / 8``
bytes, kept for the backward), and the column-sum, ``dK, dV`` and ``dQ`` kernels read it instead of drawing it
again: the same mask, the same numbers, less integer arithmetic and a little memory (H200, 8 x 256, length 200,
dropout 0.2: the column-sum pass 0.50 -> 0.32 ms a step; benchmarks/results/README.md). Its random numbers are not
torch's, so
dense and fused training with ``p > 0`` draw different masks (same distribution); with ``p = 0`` they agree to
rounding. A row without any allowed key (an empty sequence, which RecBole's batches do not hold) gets output 0
and no attention, where the dense path gives a uniform average over all keys.

Matmul precision of float32 inputs follows ``torch.backends.cuda.matmul.allow_tf32`` (the trainers' ``tf32``
option): TF32 tensor cores when on, exact float32 (``ieee``) when off. bfloat16 / float16 inputs multiply in
their dtype with float32 accumulation; softmax statistics, ``lse``, ``D`` and ``c`` are float32 throughout.
"""

import contextlib
import math
import os

import torch

try:  # Triton ships with PyPI's CUDA builds of torch on Linux; anything else uses BlockwiseAttention
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

BACKENDS = ("auto", "triton", "reference")
KEEP_MASKS = ("recompute", "stored")  # fused_attention's keep_mask
TILE_SIZES = (16, 32, 64, 128)  # RECBOLE_SPRINT_ATTN_BLOCK: tl.dot needs a power of two of at least 16
WARP_COUNTS = (1, 2, 4, 8, 16)  # RECBOLE_SPRINT_ATTN_WARPS
PHILOX_ROUNDS = (7, 8, 9, 10)  # RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS (see default_philox_rounds)
PHILOX_VALUES = (1, 4)  # RECBOLE_SPRINT_ATTN_PHILOX_VALUES (see default_philox_values)
TRITON_IMPORT_ERROR = None if triton is not None else "triton is not installed"
_MAX_DROPOUT_OFFSET = 2**31  # Philox offsets are 32-bit: B * H * n * n entries at most with dropout


def triton_available():
    return triton is not None


def default_block():
    """Tile size (``BLOCK_M = BLOCK_N``) of the Triton kernels; ``RECBOLE_SPRINT_ATTN_BLOCK`` overrides it.

    32 for every head size. Timed on an H200 (head size 64, TF32; ml-1m-3k 8 x 256, length 200, batch 128; issue 25
    in ``benchmarks/results/README.md``), 32-wide tiles with 4 warps against 64 x 8: forward 1.83 -> 0.71 ms a step,
    dK dV 2.52 -> 1.04, dQ 1.93 -> 0.88 (SPRINT's column sums 0.50 -> 0.39); the bfloat16 0.34B step with SPRINT
    0.241 -> 0.235 s. At 64 x 8 both backward kernels spill registers when dropout or SPRINT's gradient is on; at 32 x
    4 none does with the default recomputed keep mask (``sprint_overhead.py --kernel_resources``)."""
    return _env_choice("RECBOLE_SPRINT_ATTN_BLOCK", TILE_SIZES, 32)


def default_warps(dtype, block):
    """Warps per program (``RECBOLE_SPRINT_ATTN_WARPS`` overrides): 8 for float32 64-wide tiles (twice the
    registers of 16-bit ones), else 4 (the default 32-wide tiles: 4 warps is what was timed)."""
    default = 8 if (dtype == torch.float32 and block >= 64) else 4
    return _env_choice("RECBOLE_SPRINT_ATTN_WARPS", WARP_COUNTS, default)


def default_philox_rounds():
    """Philox rounds of the kernels' dropout draw (``RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS`` overrides): 10, Triton's
    ``tl.rand`` default and Random123's (Salmon et al., SC 2011, "Parallel random numbers: as easy as 1, 2, 3"), a
    margin above the fewest rounds that pass the usual statistical tests; no statistical defect is known at 7, the
    fewest allowed here. Fewer rounds draw another mask of the same distribution with less
    integer arithmetic (the column-sum pass's code 1336 -> 1184 SASS instructions at 7, ``sprint_overhead.py
    --kernel_resources``); on the H200 (8 x 256, twenty-ninth session) 7 rounds made the column-sum pass faster and
    SPRINT's dQ slower, the step no faster, so not the default. Read once per forward call: its backward draws the
    same mask."""
    return _env_choice("RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS", PHILOX_ROUNDS, 10)


def default_philox_values():
    """Keep-mask entries drawn per Philox call (``RECBOLE_SPRINT_ATTN_PHILOX_VALUES`` overrides): 1 (``tl.rand``, the
    masks of every fused run so far) or 4 (all four 32-bit outputs of one call, :func:`_keep4`: four keys of a query
    per call, a quarter of the calls; another mask of the same distribution; the kernels that work on transposed
    tiles transpose it). On the H200 (8 x 256, twenty-ninth session) no faster a step than 1, so not the default. Read
    once per forward call, like the rounds."""
    return _env_choice("RECBOLE_SPRINT_ATTN_PHILOX_VALUES", PHILOX_VALUES, 1)


def _env_choice(name, allowed, default):
    """Environment variable ``name`` as one of the integers ``allowed``, ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value not in {str(choice) for choice in allowed}:
        raise ValueError(f"{name}={value!r}: allowed values are {', '.join(map(str, allowed))} (unset: {default})")
    return int(value)


def _autocast_off(device_type):
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _tf32_enabled():
    return bool(torch.backends.cuda.matmul.allow_tf32)


# ---------------------------------------------------------------------------------------------------
# Reference: the kernels' algorithm in PyTorch
# ---------------------------------------------------------------------------------------------------
def _tile_allowed(rows, cols, lengths):
    """``[B, 1, |rows|, |cols|]`` bool: key ``j`` allowed for query ``i`` (``j <= i`` and ``j < len_b``)."""
    causal = cols[None, :] <= rows[:, None]  # [r, c]
    return causal[None, None] & (cols[None, None, None, :] < lengths[:, None, None, None])


def _blocks(n, block):
    return [(start, min(start + block, n)) for start in range(0, n, block)]


def _reference_forward(q, k, v, lengths, scale, keep, keep_scale, need_column_sums, block):
    """Online-softmax forward, tile by tile; returns ``(out, lse, column_sums or None)`` (float32 except ``out``)."""
    batch, heads, n, _ = q.shape
    dtype = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 for float64 inputs (tests)
    qf, kf, vf = q.to(dtype), k.to(dtype), v.to(dtype)
    positions = torch.arange(n, device=q.device)
    out = torch.zeros(batch, heads, n, v.size(-1), dtype=dtype, device=q.device)
    lse = torch.full((batch, heads, n), float("inf"), dtype=dtype, device=q.device)
    for m0, m1 in _blocks(n, block):
        rows = positions[m0:m1]
        q_tile = qf[:, :, m0:m1]  # [B, H, r, d]
        row_max = torch.full((batch, heads, m1 - m0), -1.0e30, dtype=dtype, device=q.device)
        row_sum = torch.zeros(batch, heads, m1 - m0, dtype=dtype, device=q.device)
        acc = torch.zeros(batch, heads, m1 - m0, v.size(-1), dtype=dtype, device=q.device)
        for n0, n1 in _blocks(m1, block):  # causal: keys up to the tile's last query
            scores = scale * q_tile @ kf[:, :, n0:n1].transpose(-1, -2)  # [B, H, r, c]
            scores = scores.masked_fill(~_tile_allowed(rows, positions[n0:n1], lengths), float("-inf"))
            new_max = torch.maximum(row_max, scores.amax(-1))
            probs = torch.exp(scores - new_max[..., None])
            alpha = torch.exp(row_max - new_max)
            row_sum = row_sum * alpha + probs.sum(-1)
            if keep is not None:
                probs = probs * keep[:, :, m0:m1, n0:n1] * keep_scale
            acc = acc * alpha[..., None] + probs @ vf[:, :, n0:n1]
            row_max = new_max
        seen = row_sum > 0
        safe_sum = torch.where(seen, row_sum, torch.ones_like(row_sum))
        out[:, :, m0:m1] = acc / safe_sum[..., None]
        lse[:, :, m0:m1] = torch.where(seen, row_max + torch.log(safe_sum), torch.full_like(row_max, float("inf")))
    column_sums = None
    if need_column_sums:
        column_sums = torch.zeros(batch, heads, n, dtype=dtype, device=q.device)
        query_valid = (positions[None, :] < lengths[:, None]).to(dtype)  # [B, n]
        for n0, n1 in _blocks(n, block):
            for m0, m1 in _blocks(n, block):
                if m1 <= n0:
                    continue
                probs = _reference_probs(qf, kf, lse, lengths, scale, keep, keep_scale, positions, m0, m1, n0, n1)
                column_sums[:, :, n0:n1] += (probs * query_valid[:, None, m0:m1, None]).sum(-2)
    return out.to(q.dtype), lse, column_sums


def _reference_probs(qf, kf, lse, lengths, scale, keep, keep_scale, positions, m0, m1, n0, n1):
    """Post-dropout probabilities of one tile, ``[B, H, r, c]``, from the stored log-sum-exp."""
    scores = scale * qf[:, :, m0:m1] @ kf[:, :, n0:n1].transpose(-1, -2)
    allowed = _tile_allowed(positions[m0:m1], positions[n0:n1], lengths)
    probs = torch.where(allowed, torch.exp(scores - lse[:, :, m0:m1, None]), torch.zeros_like(scores))
    return probs if keep is None else probs * keep[:, :, m0:m1, n0:n1] * keep_scale


def _reference_backward(q, k, v, out, lse, lengths, scale, keep, keep_scale, d_out, d_column_sums, block):
    batch, heads, n, _ = q.shape
    dtype = lse.dtype
    qf, kf, vf = q.to(dtype), k.to(dtype), v.to(dtype)
    positions = torch.arange(n, device=q.device)
    query_valid = (positions[None, :] < lengths[:, None]).to(dtype)[:, None, :]  # [B, 1, n]
    d_out = torch.zeros_like(out, dtype=dtype) if d_out is None else d_out.to(dtype)
    delta = (d_out * out.to(dtype)).sum(-1)  # [B, H, n]: dO_i . O_i
    if d_column_sums is not None:
        g = d_column_sums.to(dtype)  # [B, H, n]
        extra = torch.zeros_like(delta)
        for m0, m1 in _blocks(n, block):
            for n0, n1 in _blocks(m1, block):
                probs = _reference_probs(qf, kf, lse, lengths, scale, keep, keep_scale, positions, m0, m1, n0, n1)
                extra[:, :, m0:m1] += (probs * g[:, :, None, n0:n1]).sum(-1)  # P~ @ g, row by row
        delta = delta + query_valid * extra  # D_i = dO_i . O_i + w_i sum_k P~_ik g_k
    dq, dk, dv = torch.zeros_like(qf), torch.zeros_like(kf), torch.zeros_like(vf)
    for n0, n1 in _blocks(n, block):
        for m0, m1 in _blocks(n, block):
            if m1 <= n0:
                continue
            scores = scale * qf[:, :, m0:m1] @ kf[:, :, n0:n1].transpose(-1, -2)
            allowed = _tile_allowed(positions[m0:m1], positions[n0:n1], lengths)
            probs = torch.where(allowed, torch.exp(scores - lse[:, :, m0:m1, None]), torch.zeros_like(scores))
            keep_tile = None if keep is None else keep[:, :, m0:m1, n0:n1].to(dtype) * keep_scale
            dropped = probs if keep_tile is None else probs * keep_tile
            dv[:, :, n0:n1] += dropped.transpose(-1, -2) @ d_out[:, :, m0:m1]
            d_dropped = d_out[:, :, m0:m1] @ vf[:, :, n0:n1].transpose(-1, -2)  # dO_i . v_j
            if d_column_sums is not None:
                d_dropped = d_dropped + query_valid[:, :, m0:m1, None] * g[:, :, None, n0:n1]  # + w_i g_j
            d_probs = d_dropped if keep_tile is None else d_dropped * keep_tile
            d_scores = probs * (d_probs - delta[:, :, m0:m1, None])
            dq[:, :, m0:m1] += scale * d_scores @ kf[:, :, n0:n1]
            dk[:, :, n0:n1] += scale * d_scores.transpose(-1, -2) @ qf[:, :, m0:m1]
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class BlockwiseAttention(torch.autograd.Function):
    """:func:`fused_attention`'s algorithm in PyTorch (forward and backward tile by tile, float32 inside).

    ``keep``: ``[B, H, n, n]`` bool dropout keep mask or ``None``; ``block``: tile size.
    """

    @staticmethod
    def forward(ctx, q, k, v, lengths, scale, keep, keep_scale, need_column_sums, block):
        with _autocast_off(q.device.type):  # float32 inside, as the kernels' accumulators
            out, lse, column_sums = _reference_forward(q, k, v, lengths, scale, keep, keep_scale, need_column_sums,
                                                       block)
        ctx.save_for_backward(q, k, v, out, lse, lengths, keep)
        ctx.scale, ctx.keep_scale, ctx.block = scale, keep_scale, block
        ctx.set_materialize_grads(False)
        return out, column_sums

    @staticmethod
    def backward(ctx, d_out, d_column_sums):
        q, k, v, out, lse, lengths, keep = ctx.saved_tensors
        dq, dk, dv = _reference_backward(q, k, v, out, lse, lengths, ctx.scale, keep, ctx.keep_scale, d_out,
                                         d_column_sums, ctx.block)
        return dq, dk, dv, None, None, None, None, None, None


# ---------------------------------------------------------------------------------------------------
# Triton kernels
# ---------------------------------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def _keep(seed, bh, rows, cols, N_CTX, dropout_p, ROUNDS: tl.constexpr):
        """Keep mask of the tile ``rows x cols`` (broadcast 2-D index tensors) of head ``bh`` (Philox with ``ROUNDS``
        rounds)."""
        offsets = (bh * N_CTX + rows) * N_CTX + cols
        return tl.rand(seed, offsets, n_rounds=ROUNDS) >= dropout_p

    @triton.jit
    def _store_keep(KEEP, bh, offs_m, start_n, keep, N_CTX, NBYTES, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        """Writes the tile's keep mask (``[BLOCK_M, BLOCK_N]``: queries ``offs_m``, keys from ``start_n``) 8 keys a
        byte into ``KEEP [B*H, n, NBYTES]`` (``keep_mask="stored"``)."""
        bits = tl.reshape(keep.to(tl.int32), (BLOCK_M, BLOCK_N // 8, 8))
        packed = tl.sum(bits << tl.arange(0, 8)[None, None, :], 2)  # [BLOCK_M, BLOCK_N // 8], bit t = key 8 c + t
        offs_byte = start_n // 8 + tl.arange(0, BLOCK_N // 8)
        tl.store(KEEP + (bh.to(tl.int64) * N_CTX + offs_m[:, None]) * NBYTES + offs_byte[None, :],
                 packed.to(tl.uint8), mask=offs_m[:, None] < N_CTX)

    @triton.jit
    def _keep4(seed, bh, offs_m, start_n, N_CTX, dropout_p, ROUNDS: tl.constexpr, BLOCK_M: tl.constexpr,
               BLOCK_N: tl.constexpr):
        """Keep mask ``[BLOCK_M, BLOCK_N]`` (queries ``offs_m``, keys from ``start_n``, a multiple of 4) with four
        entries a Philox call (``RECBOLE_SPRINT_ATTN_PHILOX_VALUES=4``): keys ``4g .. 4g+3`` of query ``i`` of head
        ``bh`` take, in order, the four outputs of ``randint4x`` at counter ``(bh n + i) ceil(n / 4) + g``."""
        groups = (N_CTX + 3) // 4
        counters = (bh * N_CTX + offs_m[:, None]) * groups + (start_n // 4 + tl.arange(0, BLOCK_N // 4))[None, :]
        r0, r1, r2, r3 = tl.randint4x(seed, counters, n_rounds=ROUNDS)  # each [BLOCK_M, BLOCK_N // 4]
        # joined twice: [M, N/4, 2, 2], entry (g, a, b) = r_{2a+b}; row-major, key 4g + 2a + b gets output 2a + b
        draws = tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), (BLOCK_M, BLOCK_N))
        return tl.random.uint_to_uniform_float(draws) >= dropout_p

    @triton.jit
    def _tile_keep(seed, bh, offs_m, offs_n, start_n, N_CTX, dropout_p, KEEP, NBYTES, STORED: tl.constexpr,
                   ROUNDS: tl.constexpr, VALUES: tl.constexpr, TRANSPOSED: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr):
        """The keep mask of a tile, ``[BLOCK_M, BLOCK_N]`` (queries ``offs_m`` by keys ``offs_n``, from ``start_n``) or
        (``TRANSPOSED``) ``[BLOCK_N, BLOCK_M]``: drawn from the seed (one entry a Philox call; ``VALUES`` = 4: four),
        or (``STORED``) read from the bits the forward kernel wrote."""
        if TRANSPOSED:
            rows = offs_m[None, :]
            cols = offs_n[:, None]
        else:
            rows = offs_m[:, None]
            cols = offs_n[None, :]
        if STORED:
            byte = tl.load(KEEP + (bh.to(tl.int64) * N_CTX + rows) * NBYTES + cols // 8, mask=rows < N_CTX, other=0)
            keep = ((byte.to(tl.int32) >> (cols % 8)) & 1) != 0
        elif VALUES == 4:
            keep = _keep4(seed, bh, offs_m, start_n, N_CTX, dropout_p, ROUNDS, BLOCK_M, BLOCK_N)
            if TRANSPOSED:
                keep = tl.trans(keep)
        else:
            keep = _keep(seed, bh, rows, cols, N_CTX, dropout_p, ROUNDS)
        return keep

    @triton.jit
    def _attn_fwd(Q, K, V, O, LSE, LENS, SEED, dropout_p, keep_scale, qk_scale, KEEP, NBYTES,
                  sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
                  H, N_CTX,
                  HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  DROPOUT: tl.constexpr, STORED: tl.constexpr, ROUNDS: tl.constexpr, VALUES: tl.constexpr,
                  PRECISION: tl.constexpr):
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        b = (bh // H).to(tl.int64)
        h = (bh % H).to(tl.int64)
        length = tl.load(LENS + b)
        seed = 0
        if DROPOUT:
            seed = tl.load(SEED)  # the call's seed, drawn on the device (see fused_attention)
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_n0 = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d[None, :] < HEAD_DIM
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :],
                    mask=(offs_m[:, None] < N_CTX) & d_ok, other=0.0)
        k_base = K + b * skb + h * skh
        v_base = V + b * svb + h * svh
        row_max = tl.full([BLOCK_M], -1.0e30, tl.float32)  # finite: a row without allowed keys yields no NaN
        row_sum = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        hi = tl.minimum(start_m + BLOCK_M, length)  # causal, and no key block wholly in the padding
        for start_n in range(0, hi, BLOCK_N):
            offs_n = start_n + offs_n0
            kv_mask = (offs_n[:, None] < N_CTX) & d_ok
            k = tl.load(k_base + offs_n[:, None] * skn + offs_d[None, :], mask=kv_mask, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * svn + offs_d[None, :], mask=kv_mask, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # base-2 logits
            allowed = (offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] < length)
            s = tl.where(allowed, s, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(s, 1))
            p = tl.exp2(s - new_max[:, None])
            alpha = tl.exp2(row_max - new_max)
            row_sum = row_sum * alpha + tl.sum(p, 1)
            if DROPOUT:
                keep = _tile_keep(seed, bh, offs_m, offs_n, start_n, N_CTX, dropout_p, KEEP, NBYTES, False, ROUNDS,
                                  VALUES, False, BLOCK_M, BLOCK_N)
                if STORED:
                    _store_keep(KEEP, bh, offs_m, start_n, keep, N_CTX, NBYTES, BLOCK_M, BLOCK_N)
                p = tl.where(keep, p * keep_scale, 0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            row_max = new_max
        seen = row_sum > 0
        safe_sum = tl.where(seen, row_sum, 1.0)
        out = acc / safe_sum[:, None]
        tl.store(O + b * sob + h * soh + offs_m[:, None] * son + offs_d[None, :], out.to(O.dtype.element_ty),
                 mask=(offs_m[:, None] < N_CTX) & d_ok)
        lse = tl.where(seen, row_max + tl.log2(safe_sum), float("inf"))
        tl.store(LSE + bh.to(tl.int64) * N_CTX + offs_m, lse, mask=offs_m < N_CTX)

    @triton.jit
    def _attn_column_sums(Q, K, LSE, LENS, C, SEED, dropout_p, keep_scale, qk_scale, KEEP, NBYTES,
                          sqb, sqh, sqn, skb, skh, skn,
                          H, N_CTX,
                          HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, DROPOUT: tl.constexpr, STORED: tl.constexpr, ROUNDS: tl.constexpr,
                          VALUES: tl.constexpr,
                          PRECISION: tl.constexpr):
        start_n = tl.program_id(0) * BLOCK_N
        bh = tl.program_id(1)
        b = (bh // H).to(tl.int64)
        h = (bh % H).to(tl.int64)
        length = tl.load(LENS + b)
        seed = 0
        if DROPOUT:
            seed = tl.load(SEED)  # the call's seed, drawn on the device (see fused_attention)
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_m0 = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d[None, :] < HEAD_DIM
        k = tl.load(K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :],
                    mask=(offs_n[:, None] < N_CTX) & d_ok, other=0.0)
        q_base = Q + b * sqb + h * sqh
        lse_base = LSE + bh.to(tl.int64) * N_CTX
        sums = tl.zeros([BLOCK_N], tl.float32)
        lo = (start_n // BLOCK_M) * BLOCK_M  # first query block that reaches these keys (i >= j)
        for start_m in range(lo, length, BLOCK_M):  # valid queries only: w_i = [i < len_b]
            offs_m = start_m + offs_m0
            q = tl.load(q_base + offs_m[:, None] * sqn + offs_d[None, :],
                        mask=(offs_m[:, None] < N_CTX) & d_ok, other=0.0)
            lse = tl.load(lse_base + offs_m, mask=offs_m < N_CTX, other=float("inf"))
            st = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # [N, M]
            allowed = (offs_n[:, None] <= offs_m[None, :]) & (offs_m[None, :] < length) & (offs_n[:, None] < length)
            pt = tl.where(allowed, tl.exp2(st - lse[None, :]), 0.0)
            if DROPOUT:
                keep = _tile_keep(seed, bh, offs_m, offs_n, start_n, N_CTX, dropout_p, KEEP, NBYTES, STORED, ROUNDS,
                                  VALUES, True, BLOCK_M, BLOCK_N)
                pt = tl.where(keep, pt * keep_scale, 0.0)
            sums += tl.sum(pt, 1)
        tl.store(C + bh.to(tl.int64) * N_CTX + offs_n, sums, mask=offs_n < N_CTX)

    @triton.jit
    def _attn_bwd_delta(O, DO, DELTA, sob, soh, son, sdob, sdoh, sdon, H, N_CTX,
                        HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        PRECISION: tl.constexpr):
        """``D_i = dO_i . O_i`` (with column sums, :func:`_attn_bwd_dq` adds ``w_i E_i`` and stores the sum)."""
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        b = (bh // H).to(tl.int64)
        h = (bh % H).to(tl.int64)
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = (offs_m[:, None] < N_CTX) & (offs_d[None, :] < HEAD_DIM)
        o = tl.load(O + b * sob + h * soh + offs_m[:, None] * son + offs_d[None, :], mask=row_ok, other=0.0)
        do = tl.load(DO + b * sdob + h * sdoh + offs_m[:, None] * sdon + offs_d[None, :], mask=row_ok, other=0.0)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
        tl.store(DELTA + bh.to(tl.int64) * N_CTX + offs_m, delta, mask=offs_m < N_CTX)

    @triton.jit
    def _attn_bwd_dkdv(Q, K, V, DO, LSE, DELTA, G, LENS, DK, DV, SEED, dropout_p, keep_scale, qk_scale, KEEP, NBYTES,
                       sm_scale,
                       sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdon,
                       sdkb, sdkh, sdkn, sdvb, sdvh, sdvn,
                       H, N_CTX,
                       HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       HAS_G: tl.constexpr, DROPOUT: tl.constexpr, STORED: tl.constexpr, ROUNDS: tl.constexpr,
                       VALUES: tl.constexpr,
                       PRECISION: tl.constexpr):
        start_n = tl.program_id(0) * BLOCK_N
        bh = tl.program_id(1)
        b = (bh // H).to(tl.int64)
        h = (bh % H).to(tl.int64)
        length = tl.load(LENS + b)
        seed = 0
        if DROPOUT:
            seed = tl.load(SEED)  # the call's seed, drawn on the device (see fused_attention)
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_m0 = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d[None, :] < HEAD_DIM
        col_ok = (offs_n[:, None] < N_CTX) & d_ok
        k = tl.load(K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :], mask=col_ok, other=0.0)
        v = tl.load(V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :], mask=col_ok, other=0.0)
        if HAS_G:
            g = tl.load(G + bh.to(tl.int64) * N_CTX + offs_n, mask=offs_n < N_CTX, other=0.0)
        dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        q_base = Q + b * sqb + h * sqh
        do_base = DO + b * sdob + h * sdoh
        stat_base = bh.to(tl.int64) * N_CTX
        lo = (start_n // BLOCK_M) * BLOCK_M
        end_m = N_CTX * (start_n < length).to(tl.int32)  # keys wholly in the padding get no gradient
        for start_m in range(lo, end_m, BLOCK_M):  # every query that sees these keys, padding rows included
            offs_m = start_m + offs_m0
            row_ok = (offs_m[:, None] < N_CTX) & d_ok
            q = tl.load(q_base + offs_m[:, None] * sqn + offs_d[None, :], mask=row_ok, other=0.0)
            do = tl.load(do_base + offs_m[:, None] * sdon + offs_d[None, :], mask=row_ok, other=0.0)
            lse = tl.load(LSE + stat_base + offs_m, mask=offs_m < N_CTX, other=float("inf"))
            delta = tl.load(DELTA + stat_base + offs_m, mask=offs_m < N_CTX, other=0.0)
            st = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # [N, M]
            allowed = (offs_n[:, None] <= offs_m[None, :]) & (offs_n[:, None] < length) & (offs_m[None, :] < N_CTX)
            pt = tl.where(allowed, tl.exp2(st - lse[None, :]), 0.0)
            dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)  # dO_i . v_j, [N, M]
            if HAS_G:
                dpt += g[:, None] * (offs_m[None, :] < length).to(tl.float32)  # + w_i g_j
            if DROPOUT:
                keep = _tile_keep(seed, bh, offs_m, offs_n, start_n, N_CTX, dropout_p, KEEP, NBYTES, STORED, ROUNDS,
                                  VALUES, True, BLOCK_M, BLOCK_N)
                dropped = tl.where(keep, pt * keep_scale, 0.0)
                dpt = tl.where(keep, dpt * keep_scale, 0.0)
            else:
                dropped = pt
            dv += tl.dot(dropped.to(do.dtype), do, input_precision=PRECISION)
            dst = pt * (dpt - delta[None, :])
            dk += tl.dot(dst.to(q.dtype), q, input_precision=PRECISION)
        dk = dk * sm_scale
        tl.store(DK + b * sdkb + h * sdkh + offs_n[:, None] * sdkn + offs_d[None, :], dk.to(DK.dtype.element_ty),
                 mask=col_ok)
        tl.store(DV + b * sdvb + h * sdvh + offs_n[:, None] * sdvn + offs_d[None, :], dv.to(DV.dtype.element_ty),
                 mask=col_ok)

    @triton.jit
    def _attn_bwd_dq(Q, K, V, DO, LSE, DELTA, G, LENS, DQ, SEED, dropout_p, keep_scale, qk_scale, KEEP, NBYTES,
                     sm_scale,
                     sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdon, sdqb, sdqh, sdqn,
                     H, N_CTX,
                     HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     HAS_G: tl.constexpr, DROPOUT: tl.constexpr, STORED: tl.constexpr, ROUNDS: tl.constexpr,
                     VALUES: tl.constexpr,
                     PRECISION: tl.constexpr):
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        b = (bh // H).to(tl.int64)
        h = (bh % H).to(tl.int64)
        length = tl.load(LENS + b)
        seed = 0
        if DROPOUT:
            seed = tl.load(SEED)  # the call's seed, drawn on the device (see fused_attention)
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d[None, :] < HEAD_DIM
        row_ok = (offs_m[:, None] < N_CTX) & d_ok
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :], mask=row_ok, other=0.0)
        do = tl.load(DO + b * sdob + h * sdoh + offs_m[:, None] * sdon + offs_d[None, :], mask=row_ok, other=0.0)
        stat_base = bh.to(tl.int64) * N_CTX
        lse = tl.load(LSE + stat_base + offs_m, mask=offs_m < N_CTX, other=float("inf"))
        delta = tl.load(DELTA + stat_base + offs_m, mask=offs_m < N_CTX, other=0.0)  # with G: dO . O only
        query_valid = (offs_m < length).to(tl.float32)
        dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)  # without G: sum_j dS_ij k_j; with G: sum_j P_ij dP_ij k_j
        pk = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)  # with G: sum_j P_ij k_j
        extra = tl.zeros([BLOCK_M], tl.float32)  # with G: E_i = sum_j P~_ij g_j
        hi = tl.minimum(start_m + BLOCK_M, length)
        for start_n in range(0, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            col_ok = (offs_n[:, None] < N_CTX) & d_ok
            k = tl.load(K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :], mask=col_ok, other=0.0)
            v = tl.load(V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :], mask=col_ok, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            allowed = (offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] < length)
            p = tl.where(allowed, tl.exp2(s - lse[:, None]), 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)  # [M, N]
            if HAS_G:
                g = tl.load(G + stat_base + offs_n, mask=offs_n < N_CTX, other=0.0)
                dp += query_valid[:, None] * g[None, :]
            if DROPOUT:
                keep = _tile_keep(seed, bh, offs_m, offs_n, start_n, N_CTX, dropout_p, KEEP, NBYTES, STORED, ROUNDS,
                                  VALUES, False, BLOCK_M, BLOCK_N)
                dp = tl.where(keep, dp * keep_scale, 0.0)
            if HAS_G:
                # D_i needs E_i, a pass over the row's keys: taken here instead of in a kernel of its own, with
                # dS = P (dP - D) split as P dP - D P, the two sums over j accumulated apart and joined below
                if DROPOUT:
                    extra += tl.sum(tl.where(keep, p * keep_scale, 0.0) * g[None, :], 1)
                else:
                    extra += tl.sum(p * g[None, :], 1)
                dq += tl.dot((p * dp).to(k.dtype), k, input_precision=PRECISION)
                pk += tl.dot(p.to(k.dtype), k, input_precision=PRECISION)
            else:
                ds = p * (dp - delta[:, None])
                dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
        if HAS_G:
            delta += query_valid * extra  # D_i = dO_i . O_i + w_i E_i, for _attn_bwd_dkdv (launched after)
            tl.store(DELTA + stat_base + offs_m, delta, mask=offs_m < N_CTX)
            dq -= delta[:, None] * pk
        dq = dq * sm_scale
        tl.store(DQ + b * sdqb + h * sdqh + offs_m[:, None] * sdqn + offs_d[None, :], dq.to(DQ.dtype.element_ty),
                 mask=row_ok)

    @triton.jit
    def _dropout_keep_mask(KEEP, SEED, dropout_p, N_CTX, BLOCK: tl.constexpr, ROUNDS: tl.constexpr,
                           VALUES: tl.constexpr):
        """The kernels' keep mask as a dense ``[B*H, n, n]`` int8 tensor (tests only)."""
        start_m = tl.program_id(0) * BLOCK
        bh = tl.program_id(1)
        seed = tl.load(SEED)
        offs_m = start_m + tl.arange(0, BLOCK)
        for start_n in range(0, N_CTX, BLOCK):
            offs_n = start_n + tl.arange(0, BLOCK)
            keep = _tile_keep(seed, bh, offs_m, offs_n, start_n, N_CTX, dropout_p, KEEP, 0, False, ROUNDS, VALUES,
                              False, BLOCK, BLOCK)
            tl.store(KEEP + (bh.to(tl.int64) * N_CTX + offs_m[:, None]) * N_CTX + offs_n[None, :], keep.to(tl.int8),
                     mask=(offs_m[:, None] < N_CTX) & (offs_n[None, :] < N_CTX))


def _strides(t):
    """``(batch, head, position)`` strides of a ``[B, H, n, d]`` tensor whose last dimension is contiguous."""
    return t.stride(0), t.stride(1), t.stride(2)


def _last_dim_contiguous(t):
    return t if t.stride(-1) == 1 else t.contiguous()


def _block_d(head_size):
    """The kernels' padded head dimension (a power of two, at least 16)."""
    return max(16, triton.next_power_of_2(head_size))


def _tiles(dtype, block=None, warps=None):
    """``(block, warps)`` of a launch: the given ones, else :func:`default_block` / :func:`default_warps`."""
    block = block or default_block()
    return block, warps or default_warps(dtype, block)


def _launch_config(q, block):
    head_size = q.size(-1)
    block, warps = _tiles(q.dtype, block)
    precision = "tf32" if (q.dtype == torch.float32 and _tf32_enabled()) else "ieee"
    if q.dtype != torch.float32:
        precision = "tf32"  # ignored for 16-bit operands (tensor cores either way); one compiled variant
    return dict(HEAD_DIM=head_size, BLOCK_D=_block_d(head_size), BLOCK_M=block, BLOCK_N=block, PRECISION=precision,
                num_warps=warps)


KERNEL_NAMES = ("_attn_fwd", "_attn_column_sums", "_attn_bwd_dkdv", "_attn_bwd_dq")  # launch order in training
_ARG_TYPES = dict({name: "*fp32" for name in ("Q", "K", "V", "O", "LSE", "C", "DO", "DELTA", "G", "DK", "DV", "DQ")},
                  LENS="*i32", SEED="*i64", KEEP="*u8", dropout_p="fp32", keep_scale="fp32", qk_scale="fp32",
                  sm_scale="fp32")


def can_compile_ahead():
    """Whether :func:`compile_ahead` can run here: Triton with its NVIDIA backend installed (no GPU needed)."""
    if triton is None:
        return False
    from triton.backends import backends

    return "nvidia" in backends


def compile_ahead(name, block=None, warps=None, dropout=False, stored=False, has_g=True, head_size=64, capability=90):
    """Kernel ``name`` (one of :data:`KERNEL_NAMES`) compiled by Triton for a CUDA ``capability`` (90: Hopper, the
    H100 / H200) without a GPU: float32 operands, TF32 dots, ``block``-wide tiles, ``warps`` warps (default: what a
    float32 launch uses, :func:`default_block` / :func:`default_warps`), head size ``head_size``; ``dropout`` /
    ``stored`` / ``has_g`` as the kernels' flags of that name (``has_g``: the column-sum gradient, backward kernels
    only). Returns Triton's compiled kernel (``.asm["ptx"]``, ``.asm["cubin"]``)."""
    block, warps = _tiles(torch.float32, block, warps)
    flags = dict(HEAD_DIM=head_size, BLOCK_D=_block_d(head_size), BLOCK_M=block, BLOCK_N=block,
                 DROPOUT=dropout, STORED=stored, ROUNDS=default_philox_rounds(), VALUES=default_philox_values(),
                 PRECISION="tf32", HAS_G=has_g)
    return compile_kernel_ahead(globals()[name], flags, _ARG_TYPES, "i32", warps, capability)


def compile_kernel_ahead(kernel, flags, arg_types, other_type, warps, capability=90):
    """Triton's ``kernel`` compiled for a CUDA ``capability`` without a GPU: its arguments named in ``flags`` fixed to
    those values (constexprs), the others typed by ``arg_types`` (Triton's type strings, e.g. ``*fp32``, ``i64``) or
    ``other_type``; ``warps`` warps. Returns Triton's compiled kernel (``.asm["ptx"]``, ``.asm["cubin"]``)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fixed = {arg: value for arg, value in flags.items() if arg in kernel.arg_names}
    signature = {arg: "constexpr" if arg in fixed else arg_types.get(arg, other_type) for arg in kernel.arg_names}
    source = ASTSource(fn=kernel, signature=signature,
                       constexprs={(kernel.arg_names.index(arg),): value for arg, value in fixed.items()})
    return triton.compile(source, target=GPUTarget("cuda", capability, 32), options={"num_warps": warps})


def triton_dropout_keep_mask(batch, heads, n, dropout_p, seed, device):
    """``[B, H, n, n]`` bool: the keep mask the Triton kernels apply for ``seed`` (tests only)."""
    keep = torch.empty(batch * heads, n, n, dtype=torch.int8, device=device)
    _dropout_keep_mask[(triton.cdiv(n, 16), batch * heads)](keep, seed_tensor(seed, device), dropout_p, n, BLOCK=16,
                                                           ROUNDS=default_philox_rounds(),
                                                           VALUES=default_philox_values())
    return keep.view(batch, heads, n, n).bool()


def seed_tensor(seed, device):
    """The kernels' dropout seed as a one-element int64 tensor on ``device``, which each kernel loads: ``seed`` itself
    when it is one, ``[seed]`` for an int, or (``None``) a new draw from torch's generator of ``device``, queued on
    the device like any random operator: no host synchronisation, and inside a CUDA graph (``backbone_compile:
    cuda_graph``) a new seed on every replay, where a seed read on the host would be recorded once and repeat the
    same keep mask at every step. Seeds are below 2^31 (an int seed's Philox key is what it was as a 32-bit
    argument)."""
    if torch.is_tensor(seed):
        if seed.numel() != 1 or seed.dtype != torch.int64 or seed.device != torch.device(device):
            raise ValueError(f"seed must be an int or a one-element int64 tensor on {device}, got {seed.dtype} "
                             f"{tuple(seed.shape)} on {seed.device}")
        return seed.reshape(1)
    if seed is None:
        return torch.randint(0, 2**31 - 1, (1,), device=device)
    return torch.tensor([int(seed)], dtype=torch.int64, device=device)


class TritonAttention(torch.autograd.Function):
    """:func:`fused_attention` with the Triton kernels (see the module docstring)."""

    @staticmethod
    def forward(ctx, q, k, v, lengths, scale, dropout_p, seed, need_column_sums, block, keep_mask):
        q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
        batch, heads, n, head_size = q.shape
        launch = _launch_config(q, block)
        grid = (triton.cdiv(n, launch["BLOCK_M"]), batch * heads)
        qk_scale = scale * math.log2(math.e)  # the kernels use exp2
        keep_scale = 1.0 / (1.0 - dropout_p)
        dropout = dropout_p > 0
        out = torch.empty(batch, n, heads, head_size, dtype=q.dtype, device=q.device).transpose(1, 2)  # [B, H, n, d]
        lse = torch.empty(batch, heads, n, dtype=torch.float32, device=q.device)
        stored = dropout and keep_mask == "stored"
        rounds, values = default_philox_rounds(), default_philox_values()  # read once: the backward draws the same
        # stored: the forward kernel writes the keep mask, 8 keys a byte, and the later kernels read it back
        nbytes = triton.cdiv(n, launch["BLOCK_N"]) * launch["BLOCK_N"] // 8 if stored else 0
        keep_bits = torch.empty(batch * heads, n, nbytes, dtype=torch.uint8, device=q.device) if stored else lse
        bits = (keep_bits, nbytes)  # without stored: a placeholder pointer, never read
        _attn_fwd[grid](q, k, v, out, lse, lengths, seed, dropout_p, keep_scale, qk_scale, *bits,
                        *_strides(q), *_strides(k), *_strides(v), *_strides(out), heads, n,
                        DROPOUT=dropout, STORED=stored, ROUNDS=rounds, VALUES=values, **launch)
        column_sums = None
        if need_column_sums:
            column_sums = torch.empty(batch, heads, n, dtype=torch.float32, device=q.device)
            _attn_column_sums[grid](q, k, lse, lengths, column_sums, seed, dropout_p, keep_scale, qk_scale, *bits,
                                    *_strides(q), *_strides(k), heads, n, DROPOUT=dropout, STORED=stored,
                                    ROUNDS=rounds, VALUES=values, **launch)
        ctx.save_for_backward(q, k, v, out, lse, lengths, keep_bits, seed)
        ctx.scale, ctx.dropout_p, ctx.block = scale, dropout_p, block
        ctx.stored, ctx.nbytes, ctx.rounds, ctx.values = stored, nbytes, rounds, values
        ctx.set_materialize_grads(False)
        return out, column_sums

    @staticmethod
    def backward(ctx, d_out, d_column_sums):
        q, k, v, out, lse, lengths, keep_bits, seed = ctx.saved_tensors
        batch, heads, n, _ = q.shape
        d_out = torch.zeros_like(out) if d_out is None else _last_dim_contiguous(d_out)
        if d_out.dtype != out.dtype:
            d_out = d_out.to(out.dtype)
        has_g = d_column_sums is not None
        g = d_column_sums.float().contiguous() if has_g else lse  # lse: a placeholder pointer, never read
        launch = _launch_config(q, ctx.block)
        grid = (triton.cdiv(n, launch["BLOCK_M"]), batch * heads)
        qk_scale = ctx.scale * math.log2(math.e)
        keep_scale = 1.0 / (1.0 - ctx.dropout_p)
        dropout = ctx.dropout_p > 0
        common = (seed, ctx.dropout_p, keep_scale, qk_scale, keep_bits, ctx.nbytes)
        delta = torch.empty_like(lse)
        _attn_bwd_delta[grid](out, d_out, delta, *_strides(out), *_strides(d_out), heads, n, **launch)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

        def dq_kernel():
            _attn_bwd_dq[grid](q, k, v, d_out, lse, delta, g, lengths, dq, *common, ctx.scale,
                               *_strides(q), *_strides(k), *_strides(v), *_strides(d_out), *_strides(dq),
                               heads, n, HAS_G=has_g, DROPOUT=dropout, STORED=ctx.stored, ROUNDS=ctx.rounds,
                               VALUES=ctx.values,
                               **launch)

        if has_g:  # the dq kernel completes D (it adds w_i E_i), which the dk/dv kernel reads
            dq_kernel()
        _attn_bwd_dkdv[grid](q, k, v, d_out, lse, delta, g, lengths, dk, dv, *common, ctx.scale,
                             *_strides(q), *_strides(k), *_strides(v), *_strides(d_out), *_strides(dk), *_strides(dv),
                             heads, n, HAS_G=has_g, DROPOUT=dropout, STORED=ctx.stored, ROUNDS=ctx.rounds,
                             VALUES=ctx.values,
                             **launch)
        if not has_g:
            dq_kernel()
        return dq, dk, dv, None, None, None, None, None, None, None


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------
def fused_attention(q, k, v, lengths, dropout_p=0.0, need_column_sums=False, backend="auto", block=None,
                    scale=None, seed=None, keep=None, keep_mask="recompute"):
    r"""Causal attention of right-padded sequences without the ``n x n`` matrix, and its column sums.

    Args:
        q, k, v: ``[B, H, n, d_h]`` (any strides with a contiguous last dimension; one dtype).
        lengths: ``[B]`` valid positions per row (keys and queries ``< len_b`` are valid).
        dropout_p: attention-dropout probability (pass 0 in evaluation).
        need_column_sums: also return ``c [B, H, n]`` (float32), differentiable.
        backend: ``auto`` (Triton for CUDA tensors where Triton is installed, else the PyTorch reference),
            ``triton`` or ``reference``.
        block: tile size (default :func:`default_block` for Triton, 64 for the reference).
        scale: score scale (default ``1 / sqrt(d_h)``).
        seed: dropout seed of the Triton kernels, an int or a one-element int64 tensor on q's device (default:
            drawn on q's device from torch's generator, :func:`seed_tensor`).
        keep: ``[B, H, n, n]`` bool keep mask of the reference backend (default: drawn with ``torch.rand``).
        keep_mask: how the Triton kernels get the dropout keep mask after the forward kernel drew it: ``recompute``
            (each kernel draws it again from the seed) or ``stored`` (the forward kernel writes it, one bit an entry,
            ``B * H * n * n / 8`` bytes kept for the backward, and the others read it); the same mask either way.

    Returns:
        ``(out [B, H, n, d_h] in q's dtype, column_sums or None)``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if keep_mask not in KEEP_MASKS:
        raise ValueError(f"keep_mask must be one of {', '.join(KEEP_MASKS)}, got {keep_mask!r}")
    if not 0 <= dropout_p < 1:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p!r}")
    if q.dim() != 4 or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"q, k, v must be [B, H, n, d_h] of one shape, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    k, v = k.to(q.dtype), v.to(q.dtype)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    if backend == "auto":
        backend = "triton" if (q.is_cuda and triton is not None) else "reference"
    if backend == "triton":
        if triton is None:
            raise RuntimeError(f"backend='triton' but {TRITON_IMPORT_ERROR}")
        if v.size(-1) != q.size(-1):
            raise ValueError("the Triton kernels need d_v == d_qk")
        batch, heads, n, _ = q.shape
        if dropout_p > 0 and batch * heads * n * n >= _MAX_DROPOUT_OFFSET:
            raise ValueError(f"attention dropout in the Triton kernels needs B * H * n * n < 2^31 (Philox offsets), "
                             f"got {batch} * {heads} * {n}^2; use a smaller batch or attn_dropout_prob 0")
        lengths = lengths.to(device=q.device, dtype=torch.int32).contiguous()
        seed = seed_tensor(seed, q.device) if dropout_p > 0 else lengths  # without dropout: a pointer never read
        return TritonAttention.apply(q, k, v, lengths, scale, float(dropout_p), seed,
                                     bool(need_column_sums), block, keep_mask)
    lengths = lengths.to(device=q.device, dtype=torch.long)
    if dropout_p > 0 and keep is None:
        batch, heads, n, _ = q.shape
        keep = torch.rand(batch, heads, n, n, device=q.device) >= dropout_p
    if dropout_p == 0:
        keep = None
    return BlockwiseAttention.apply(q, k, v, lengths, scale, keep, 1.0 / (1.0 - dropout_p), bool(need_column_sums),
                                    block or 64)

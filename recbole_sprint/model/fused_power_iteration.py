r"""SPRINT's power iterations of every regularised matrix in a handful of Triton kernels
(``sprint_power_impl: triton``, issue 25).

:func:`fused_spectral_norms` gives, for each estimator of a :class:`recbole_sprint.model.sprint.TermsLayout`, what
:func:`recbole_sprint.model.sprint.power_iteration` gives for that estimator's stacked matrices: the norms
``sigma [G]``, the new ``u [G, m]`` and ``v [G, n]``; and in the backward the same gradient (the one
:class:`~recbole_sprint.model.sprint._PowerIteration` writes down, through the iterates). The batched PyTorch path
runs one chain of operators per estimator (value, output, ffn_in, ffn_out, embedding: each a different shape), 9
forward and 11 backward for one power-iteration step, after stacking the layers' weights. Here every matrix of every
estimator is one row of a table, whatever its shape, and the kernels read the weights where they are (an element
offset from one base weight, the row stride): no stacking, and for one power-iteration step four kernels forward
(plus one copy of the start vectors) and one backward, for all matrices at once.

The algorithm, for a matrix ``W [m, n]`` cut into tiles of ``BM`` rows (a tile is one program of a tile kernel; its
columns are read in chunks of ``BN``):

* ``_pi_rows`` (per tile): ``w = W x`` for the tile's rows, stored; and, when asked, the tile's share of ``W^T w``
  (``sum_r w_r W_r``), stored per tile in a buffer of partial sums (no atomics: the result does not depend on the
  order programs run in), and ``|w|^2`` of the tile. The vector ``x`` is made by every program from what the kernel
  before it left: the start vector; ``z / max(|z|, eps)`` (a power-iteration step's normalisation, ``|z|`` summed by
  the program itself over the ``n`` entries; the tiles of row block 0 store ``v_t`` and ``|z_t|``); or, in the
  backward, ``dz_t = (dv_t - a_t v_t (v_t . dv_t)) / max(|z_t|, eps)`` with ``a_t = [|z_t| >= eps]`` (row block 0
  stores it). So no kernel of its own normalises or projects a vector.
* ``_pi_sum`` (per matrix and chunk of ``CW`` columns): the sum of the matrix's partials, ``z = W^T w``.
* ``_pi_finish`` (per matrix and chunk, after ``_pi_rows`` of ``y = W v_k``): ``sigma = |y|`` from the tiles'
  ``|w|^2`` (each program sums them), ``u = y / sigma`` and ``q = W^T u`` (the partials over ``sigma``), which the
  backward needs as ``dv_k = g q``.
* backward: for ``t = k .. 2``, ``_pi_rows`` of ``dw_t = W dz_t`` and ``_pi_sum`` of ``dv_{t-1} = W^T dw_t``; then
  ``_pi_grad`` (per tile) makes ``dz_1`` and ``dw_1 = W dz_1`` for its rows and writes
  ``dW = g u v_k^T + sum_t (w_t dz_t^T + dw_t v_{t-1}^T)`` into one buffer laid out like the parameters, whose views
  are the gradients returned. With one step (the default) the backward is that one kernel.

The sums over a matrix's tiles and over its columns run with as many programs as there are chunks of ``CW`` columns
(the thirty-second session's version summed each matrix in one program, serially over its tiles: ~30 us a launch at
Beauty's item table of 379 tiles, where the kernels' reads take a few).

Every number is computed in the weights' dtype (float32 or float64; exact products, no TF32), so the values equal the
batched path's up to the order of summation. Used on CUDA tensors; on the CPU only under Triton's interpreter
(``TRITON_INTERPRET=1``, the tests). ``torch.compile`` does not trace these launches: under a compiled
``sprint_compile`` mode the kernels run as they are and the terms around them are compiled
(:func:`recbole_sprint.model.sprint.compiled_sprint_terms`); CUDA graphs record them like any other kernels.
"""

import collections
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

try:  # Triton ships with PyPI's CUDA builds of torch on Linux
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

POWER_IMPLS = ("auto", "torch", "triton")  # sprint_power_impl (auto: triton where its kernels run, else torch)
ROWS_PER_TILE = (16, 32, 64, 128, 256)  # BM, rows of a tile program: RECBOLE_SPRINT_PI_ROWS (default_rows_per_tile)
COLUMN_CHUNKS = (64, 128, 256, 512)  # BN, columns a tile program reads at once: RECBOLE_SPRINT_PI_COLUMNS
COLUMN_CHUNK = 256  # BN's default (default_column_chunk)
ROWS_PER_STEP = 1024  # BR: rows (of u) or tiles (their |w|^2) a per-matrix program reads at once
MATRIX_CHUNK = 32  # CW: columns a per-matrix program sums (one program per matrix and chunk)
_PARTIAL_ELEMENTS = 8192  # elements of the partial-sum buffer a per-matrix program loads at once (RB = this / CW)
_META = ("w_off", "m", "n", "s_row", "vo", "mo", "po", "nb", "tf", "g_off")  # one row of the matrix table
# (interpreter on, matrices, rows a tile, the weights' addresses, shapes, dtypes, devices) -> their _Plan, or why the
# kernels cannot run on them (a string)
_TABLES = collections.OrderedDict()
_MATRICES = collections.OrderedDict()  # (layout, weight shapes) -> layout_matrices
_MAX_ENTRIES = 64  # entries kept in each cache (_TABLES, _MATRICES)
# Tables a CUDA graph recorded, kept for the process's life: a graph holds their device addresses, not the tensors, and
# a table dropped from _TABLES would free memory that a later replay still reads (a few kilobytes a table).
_RECORDED = []


def default_rows_per_tile():
    """Rows of a tile program (``RECBOLE_SPRINT_PI_ROWS`` overrides; one of :data:`ROWS_PER_TILE`): 16, the fastest of
    16 / 32 / 64 rows (with 128 or 256 columns a chunk) at Beauty's 2-layer shapes, at ml-1m-3k 8 x 256's and at the
    0.34B configuration's: one power-iteration step of every matrix, forward and backward recorded as one CUDA graph,
    on an H200 (thirty-fourth session, ``benchmarks/results/README.md``). Fewer rows make more programs and more
    partial sums (summed by ``_pi_sum`` and ``_pi_finish``, in parallel over chunks of columns). Part of the key of
    the cached matrix tables (a new value makes a new table)."""
    from recbole_sprint.model.fused_attention import _env_choice

    return _env_choice("RECBOLE_SPRINT_PI_ROWS", ROWS_PER_TILE, 16)


def default_column_chunk():
    """Columns a tile program reads at once (``RECBOLE_SPRINT_PI_COLUMNS`` overrides; one of :data:`COLUMN_CHUNKS`):
    256, faster than 128 at every row count timed with :func:`default_rows_per_tile` (at ``d = 256`` a chunk is a whole
    row of every matrix but the FFN's ``W_2``, of ``4d`` columns, read in four). At the 0.34B configuration (``d =
    1536``) 512 beat 256 at 32 rows, and 16 x 256 beat both. Part of the key of the cached matrix tables."""
    from recbole_sprint.model.fused_attention import _env_choice

    return _env_choice("RECBOLE_SPRINT_PI_COLUMNS", COLUMN_CHUNKS, COLUMN_CHUNK)


def tile_warps(bm, bn):
    """Warps of a tile program: 8 where a chunk holds more than 4096 entries (64 registers a thread at 4), else 4."""
    return 8 if bm * bn > 4096 else 4


def _capturing(tensor):
    """Whether ``tensor``'s work is being recorded into a CUDA graph (never off CUDA)."""
    return tensor.is_cuda and torch.cuda.is_current_stream_capturing()


def triton_launches(n_iters):
    """``(forward, backward)``: the Triton kernels :func:`fused_power_iteration` launches for ``n_iters`` steps (besides
    one copy of the start vectors, and a zero fill per weight some of whose rows no matrix reads)."""
    return 2 * n_iters + 2, 2 * n_iters - 1


def interpreting():
    """Whether Triton runs its interpreter (``TRITON_INTERPRET=1``): the kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


if triton is not None:

    @triton.jit
    def _tile_of_matrix(TILES, META, NMETA: tl.constexpr, BM: tl.constexpr):
        # this program's tile: (tile, matrix g, g's META row, row block, rows [BM], row mask, n, row stride, vo, mo)
        tile = tl.program_id(0)
        g = tl.load(TILES + 2 * tile)
        block = tl.load(TILES + 2 * tile + 1)
        meta = META + g * NMETA
        rows = block * BM + tl.arange(0, BM)
        return (tile, g, meta, block, rows, rows < tl.load(meta + 1), tl.load(meta + 2), tl.load(meta + 3),
                tl.load(meta + 4), tl.load(meta + 5))

    @triton.jit
    def _dv_chunk(Q, DV, vo, cols, col_ok, scale, FIRST: tl.constexpr):
        # dv on columns ``cols``: g q at the last step (FIRST), else the stored dv
        if FIRST:
            dv = scale * tl.load(Q + vo + cols, mask=col_ok, other=0.0)
        else:
            dv = tl.load(DV + vo + cols, mask=col_ok, other=0.0)
        return dv

    @triton.jit
    def _x_scalars(MODE: tl.constexpr, FIRST: tl.constexpr, g, n, vo, SRC, V, Q, GSIGMA, NORM, CLAMPED, eps,
                   BN: tl.constexpr):
        # what the chunks of the vector x need (_x_chunk): (divisor, aux, scale, keep).
        # MODE 0, x = SRC: (1, 0, 1, 1). MODE 1, x = z / max(|z|, eps) with z = SRC: (max(|z|, eps), |z|, 1, 1).
        # MODE 2, x = dz = (dv - a v (v . dv)) / max(|z|, eps) with dv = g Q (FIRST) or SRC, v = V, |z| = NORM[g],
        # max(|z|, eps) = CLAMPED[g], a = [|z| >= eps]: (CLAMPED[g], a (v . dv), g, a)
        divisor = 1.0
        aux = 0.0
        scale = 1.0
        keep = 1.0
        if MODE == 1:
            squares = tl.zeros([BN], dtype=SRC.dtype.element_ty)
            for c0 in range(0, n, BN):
                cols = c0 + tl.arange(0, BN)
                z = tl.load(SRC + vo + cols, mask=cols < n, other=0.0)
                squares += z * z
            aux = tl.sqrt(tl.sum(squares, axis=0))
            divisor = tl.maximum(aux, eps)
        if MODE == 2:
            if FIRST:
                scale = tl.load(GSIGMA + g)
            keep = tl.where(tl.load(NORM + g) >= eps, 1.0, 0.0)
            along = tl.zeros([BN], dtype=V.dtype.element_ty)
            for c0 in range(0, n, BN):
                cols = c0 + tl.arange(0, BN)
                dv = _dv_chunk(Q, SRC, vo, cols, cols < n, scale, FIRST)
                along += tl.load(V + vo + cols, mask=cols < n, other=0.0) * dv
            aux = keep * tl.sum(along, axis=0)
            divisor = tl.load(CLAMPED + g)
        return divisor, aux, scale, keep

    @triton.jit
    def _x_chunk(MODE: tl.constexpr, FIRST: tl.constexpr, cols, col_ok, vo, SRC, V, Q, divisor, aux, scale, keep):
        # x on columns ``cols`` (see _x_scalars)
        if MODE == 0:
            x = tl.load(SRC + vo + cols, mask=col_ok, other=0.0)
        elif MODE == 1:
            x = tl.load(SRC + vo + cols, mask=col_ok, other=0.0) / divisor
        else:
            dv = _dv_chunk(Q, SRC, vo, cols, col_ok, scale, FIRST)
            x = (dv - keep * aux * tl.load(V + vo + cols, mask=col_ok, other=0.0)) / divisor
        return x

    @triton.jit
    def _pi_rows(W, META, TILES, SRC, V, Q, GSIGMA, NORM, CLAMPED, XOUT, NOUT, COUT, OUT, PART, SQ, eps,
                 NMETA: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, MODE: tl.constexpr, FIRST: tl.constexpr,
                 STORE_X: tl.constexpr, WANT_PART: tl.constexpr, WANT_SQ: tl.constexpr):
        # one tile (matrix g, rows block * BM ...): x made from SRC (_x_scalars' MODE), OUT[rows] = W[rows] x;
        # WANT_PART: PART[block] = sum_r OUT_r W_r; WANT_SQ: SQ[tile] = |OUT[rows]|^2. STORE_X: row block 0 stores x
        # in XOUT (and, MODE 1, |z| in NOUT[g], max(|z|, eps) in COUT[g])
        tile, g, meta, block, rows, row_ok, n, s_row, vo, mo = _tile_of_matrix(TILES, META, NMETA, BM)
        divisor, aux, scale, keep = _x_scalars(MODE, FIRST, g, n, vo, SRC, V, Q, GSIGMA, NORM, CLAMPED, eps, BN)
        if STORE_X:
            if block == 0:
                for c0 in range(0, n, BN):
                    cols = c0 + tl.arange(0, BN)
                    x = _x_chunk(MODE, FIRST, cols, cols < n, vo, SRC, V, Q, divisor, aux, scale, keep)
                    tl.store(XOUT + vo + cols, x, mask=cols < n)
                if MODE == 1:
                    tl.store(NOUT + g, aux)
                    tl.store(COUT + g, divisor)
        row_ptr = W + tl.load(meta + 0) + rows[:, None] * s_row  # [BM, 1]
        acc = tl.zeros([BM], dtype=W.dtype.element_ty)
        for c0 in range(0, n, BN):
            cols = c0 + tl.arange(0, BN)
            col_ok = cols < n
            x = _x_chunk(MODE, FIRST, cols, col_ok, vo, SRC, V, Q, divisor, aux, scale, keep)
            w = tl.load(row_ptr + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
            acc += tl.sum(w * x[None, :], axis=1)
        tl.store(OUT + mo + rows, acc, mask=row_ok)
        if WANT_SQ:
            tl.store(SQ + tile, tl.sum(acc * acc, axis=0))
        if WANT_PART:
            part = PART + tl.load(meta + 6) + block * n  # this tile's partial sums
            for c0 in range(0, n, BN):
                cols = c0 + tl.arange(0, BN)
                col_ok = cols < n
                w = tl.load(row_ptr + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
                tl.store(part + cols, tl.sum(w * acc[:, None], axis=0), mask=col_ok)

    @triton.jit
    def _summed_partials(PART, meta, n, cols, col_ok, CW: tl.constexpr, RB: tl.constexpr):
        # [CW]: columns ``cols`` of the sum over the matrix's tiles of their partial sums
        po = tl.load(meta + 6)
        nb = tl.load(meta + 7)
        z = tl.zeros([CW], dtype=PART.dtype.element_ty)
        for b0 in range(0, nb, RB):
            blocks = b0 + tl.arange(0, RB)
            p = tl.load(PART + po + blocks[:, None] * n + cols[None, :],
                        mask=(blocks < nb)[:, None] & col_ok[None, :], other=0.0)
            z += tl.sum(p, axis=0)
        return z

    @triton.jit
    def _pi_sum(META, PART, OUT, NMETA: tl.constexpr, CW: tl.constexpr, RB: tl.constexpr):
        # program (matrix g, chunk c): OUT[g's columns c CW ...] = the sum of g's tiles' partial sums there
        g = tl.program_id(0)
        meta = META + g * NMETA
        n = tl.load(meta + 2)
        cols = tl.program_id(1) * CW + tl.arange(0, CW)
        if tl.program_id(1) * CW < n:
            z = _summed_partials(PART, meta, n, cols, cols < n, CW, RB)
            tl.store(OUT + tl.load(meta + 4) + cols, z, mask=cols < n)

    @triton.jit
    def _pi_finish(META, SQ, PART, Y, U, Q, SIGMA, tiny, NMETA: tl.constexpr, CW: tl.constexpr, RB: tl.constexpr,
                   BR: tl.constexpr):
        # program (matrix g, chunk c), after _pi_rows of y = W v_k: SIGMA[g] = |y| (c = 0), U = y / SIGMA on rows
        # c BR ..., Q = W^T y / SIGMA on columns c CW ... (0 where y is 0); |y| from the tiles' |w|^2, summed by each
        g = tl.program_id(0)
        c = tl.program_id(1)
        meta = META + g * NMETA
        m = tl.load(meta + 1)
        n = tl.load(meta + 2)
        nb = tl.load(meta + 7)
        tf = tl.load(meta + 8)
        squares = tl.zeros([BR], dtype=Y.dtype.element_ty)
        for b0 in range(0, nb, BR):
            blocks = b0 + tl.arange(0, BR)
            squares += tl.load(SQ + tf + blocks, mask=blocks < nb, other=0.0)
        sigma = tl.sqrt(tl.sum(squares, axis=0))
        denominator = tl.maximum(sigma, tiny)
        if c == 0:
            tl.store(SIGMA + g, sigma)
        mo = tl.load(meta + 5)
        rows = c * BR + tl.arange(0, BR)
        if c * BR < m:
            tl.store(U + mo + rows, tl.load(Y + mo + rows, mask=rows < m, other=0.0) / denominator, mask=rows < m)
        cols = c * CW + tl.arange(0, CW)
        if c * CW < n:
            z = _summed_partials(PART, meta, n, cols, cols < n, CW, RB)
            tl.store(Q + tl.load(meta + 4) + cols, z / denominator, mask=cols < n)

    @triton.jit
    def _pi_grad(W, META, TILES, GSIGMA, U, Q, DV, VS, WS, DZS, DWS, NORM, CLAMPED, GRAD, NV, NM, eps,
                 NMETA: tl.constexpr, K: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
        # one tile: dz_1 (from dv_1: g Q when K = 1, else DV), dw_1 = W dz_1 on the tile's rows, then
        # GRAD[rows] = g u v_K^T + w_1 dz_1^T + dw_1 v_0^T + sum_{t >= 2} (w_t dz_t^T + dw_t v_{t-1}^T), in the
        # parameter's layout (w_t = WS[t - 1], dz_t = DZS[t - 1], dw_t = DWS[t - 1], v_t = VS[t]; |z_1| = NORM[g],
        # max(|z_1|, eps) = CLAMPED[g])
        tile, g, meta, block, rows, row_ok, n, s_row, vo, mo = _tile_of_matrix(TILES, META, NMETA, BM)
        divisor, aux, scale, keep = _x_scalars(2, K == 1, g, n, vo, DV, VS + NV, Q, GSIGMA, NORM, CLAMPED, eps, BN)
        row_ptr = W + tl.load(meta + 0) + rows[:, None] * s_row  # [BM, 1]
        dw = tl.zeros([BM], dtype=W.dtype.element_ty)
        for c0 in range(0, n, BN):
            cols = c0 + tl.arange(0, BN)
            col_ok = cols < n
            dz = _x_chunk(2, K == 1, cols, col_ok, vo, DV, VS + NV, Q, divisor, aux, scale, keep)
            w = tl.load(row_ptr + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
            dw += tl.sum(w * dz[None, :], axis=1)
        g_off = tl.load(meta + 9)
        dy = tl.load(GSIGMA + g) * tl.load(U + mo + rows, mask=row_ok, other=0.0)
        w_1 = tl.load(WS + mo + rows, mask=row_ok, other=0.0)
        for c0 in range(0, n, BN):
            cols = c0 + tl.arange(0, BN)
            col_ok = cols < n
            dz = _x_chunk(2, K == 1, cols, col_ok, vo, DV, VS + NV, Q, divisor, aux, scale, keep)
            acc = (dy[:, None] * tl.load(VS + K * NV + vo + cols, mask=col_ok, other=0.0)[None, :]
                   + w_1[:, None] * dz[None, :]
                   + dw[:, None] * tl.load(VS + vo + cols, mask=col_ok, other=0.0)[None, :])
            for t in tl.static_range(1, K):
                w_t = tl.load(WS + t * NM + mo + rows, mask=row_ok, other=0.0)
                dw_t = tl.load(DWS + t * NM + mo + rows, mask=row_ok, other=0.0)
                dz_t = tl.load(DZS + t * NV + vo + cols, mask=col_ok, other=0.0)
                v_before = tl.load(VS + t * NV + vo + cols, mask=col_ok, other=0.0)
                acc += w_t[:, None] * dz_t[None, :] + dw_t[:, None] * v_before[None, :]
            tl.store(GRAD + g_off + rows[:, None] * s_row + cols[None, :], acc,
                     mask=row_ok[:, None] & col_ok[None, :])


# ---------------------------------------------------------------------------------------------------
# The matrix table
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """The table of one layout's matrices over one set of weights (addresses, shapes), on the weights' device."""

    meta: torch.Tensor  # [G, len(_META)] int64
    tiles: torch.Tensor  # [T, 2] int64: (matrix, row block)
    base: int  # position in ``weights`` of the weight the offsets count from
    n_matrices: int
    n_tiles: int
    nv: int  # sum of n: the length of a flat vector of every matrix's v
    nm: int  # sum of m: of every matrix's u
    n_partial: int  # sum over matrices of tiles x n
    bm: int  # rows of a tile
    bn: int  # columns a tile program reads at once
    chunks: int  # the per-matrix kernels' second grid dimension: chunks of the longest u or v
    estimators: Tuple[Tuple[str, int, int, int, int, int, int], ...]  # (name, g0, g1, m0, n0, m, n) per estimator
    grads: Tuple[Tuple[int, int], ...]  # (position in weights, offset in the flat gradient) per weight read
    grad_size: int
    partly_read: Tuple[int, ...]  # positions of weights some of whose rows no matrix reads (their gradient there: 0)


def layout_matrices(layout, weights):
    """``((name, position, first row, rows), ...)``: the matrices of ``layout`` (a
    :class:`~recbole_sprint.model.sprint.TermsLayout`) in the batched path's order (the value heads layer by layer,
    head by head; the other estimators one matrix a layer; the embedding); kept per layout and weight shapes."""
    key = (layout, tuple(tuple(weight.shape) for weight in weights))
    return _cached(_MATRICES, key, lambda: _layout_matrices(layout, weights))


def _layout_matrices(layout, weights):
    matrices = []
    for name in layout.names:
        if name == "value":
            for position, first, end in layout.value:
                first = 0 if first is None else first
                end = weights[position].size(0) if end is None else end
                head_rows = (end - first) // layout.n_heads
                matrices += [(name, position, first + h * head_rows, head_rows) for h in range(layout.n_heads)]
        elif name == "embedding":
            matrices.append((name, layout.embedding, 0, weights[layout.embedding].size(0)))
        else:
            matrices += [(name, position, 0, weights[position].size(0)) for position in getattr(layout, name)]
    return tuple(matrices)


def _cached(cache, key, make):
    if key not in cache:
        cache[key] = make()
        while len(cache) > _MAX_ENTRIES:
            cache.popitem(last=False)
    return cache[key]


def _table(matrices, weights):
    """The :class:`_Plan` of ``matrices`` of ``weights``, or (a string) why the kernels cannot run on them; kept per
    matrices and weights' addresses, so a training step's check (:func:`unusable_reason`) makes the table that its
    kernels then use (before any CUDA graph records them)."""
    described = tuple((weight.data_ptr(), tuple(weight.shape), weight.dtype, weight.device) for weight in weights)
    key = (interpreting(), matrices, default_rows_per_tile(), default_column_chunk(), described)
    return _cached(_TABLES, key, lambda: _unusable_reason(matrices, weights) or _make_plan(matrices, weights))


def unusable_reason(matrices, weights) -> Optional[str]:
    """Why :func:`fused_power_iteration` cannot run on ``matrices`` of ``weights`` (``None``: it can)."""
    table = _table(matrices, weights)
    return table if isinstance(table, str) else None


def _unusable_reason(matrices, weights):
    if triton is None:
        return "triton is not installed"
    if not matrices:
        return "no power iteration to run"
    device = weights[0].device
    if device.type != "cuda" and not interpreting():
        return f"its kernels need CUDA tensors (these are on {device.type})"
    if device.type != "cpu" and interpreting():  # the interpreter copies each argument to the host on its own
        return "Triton's interpreter (TRITON_INTERPRET=1) runs them on CPU tensors only"
    dtypes = {weight.dtype for weight in weights}
    if len(dtypes) != 1 or dtypes & {torch.float32, torch.float64} != dtypes:
        return f"its kernels take float32 or float64 weights of one dtype (these: {sorted(map(str, dtypes))})"
    if any(weight.device != device or weight.dim() != 2 or not weight.is_contiguous() for weight in weights):
        return "its kernels take contiguous 2-d weights on one device"
    read = collections.defaultdict(list)
    for _, position, first, rows in matrices:
        read[position].append((first, first + rows))
    for spans in read.values():
        spans.sort()
        if any(end > start for (_, end), (start, _) in zip(spans, spans[1:])):
            return "a weight's rows are read by two matrices"
    return None


def _make_plan(matrices, weights):
    bm = default_rows_per_tile()
    base = matrices[0][1]
    size = weights[base].element_size()
    grads, grad_offset, grad_size, rows_read = [], {}, 0, collections.Counter()
    for _, position, _, rows in matrices:
        rows_read[position] += rows
        if position not in grad_offset:
            grad_offset[position] = grad_size
            grads.append((position, grad_size))
            grad_size += weights[position].numel()
    meta, tiles, estimators = [], [], []
    vo = mo = po = 0
    for g, (name, position, first, rows) in enumerate(matrices):
        weight = weights[position]
        distance = weight.data_ptr() - weights[base].data_ptr()
        assert distance % size == 0, "weights of one dtype are aligned to their element size"
        n, s_row = weight.size(1), weight.stride(0)
        blocks = -(-rows // bm)
        meta.append((distance // size + first * s_row, rows, n, s_row, vo, mo, po, blocks, len(tiles),
                     grad_offset[position] + first * s_row))
        tiles += [(g, block) for block in range(blocks)]
        if not estimators or estimators[-1][0] != name:
            estimators.append([name, g, g, mo, vo, rows, n])
        estimators[-1][2] = g + 1
        vo, mo, po = vo + n, mo + rows, po + blocks * n
    device = weights[base].device
    return _Plan(
        meta=torch.tensor(meta, dtype=torch.int64, device=device),
        tiles=torch.tensor(tiles, dtype=torch.int64, device=device),
        base=base, n_matrices=len(meta), n_tiles=len(tiles), nv=vo, nm=mo, n_partial=po,
        bm=bm, bn=default_column_chunk(),
        chunks=max(max(-(-rows // ROWS_PER_STEP), -(-weights[position].size(1) // MATRIX_CHUNK))
                   for _, position, _, rows in matrices),
        estimators=tuple(tuple(e) for e in estimators), grads=tuple(grads),
        grad_size=grad_size,
        partly_read=tuple(p for p, rows in rows_read.items() if rows < weights[p].size(0)),
    )


def _launch_sizes(plan):
    """The kernels' constants: per tile (``rows``) and per matrix (``sums``)."""
    return (dict(NMETA=len(_META), BM=plan.bm, BN=plan.bn, num_warps=tile_warps(plan.bm, plan.bn)),
            dict(NMETA=len(_META), CW=MATRIX_CHUNK, RB=_PARTIAL_ELEMENTS // MATRIX_CHUNK))


class _FusedPowerIteration(torch.autograd.Function):
    """``(sigma [G], u [sum m], v [sum n])`` of every matrix of ``plan``; gradients to the weights only."""

    @staticmethod
    def forward(ctx, plan, n_iters, eps, starts, *weights):
        base = weights[plan.base]
        if _capturing(base) and not any(recorded is plan for recorded in _RECORDED):
            _RECORDED.append(plan)  # the graph will read plan.meta and plan.tiles at every replay
        rows, sums = _launch_sizes(plan)
        k, G, T = n_iters, plan.n_matrices, plan.n_tiles
        vs = base.new_empty(k + 1, plan.nv)  # v_0 (the starts) .. v_k
        torch.cat([start.reshape(-1).to(base.dtype) for start in starts], out=vs[0])
        ws = base.new_empty(k, plan.nm)  # w_t = W v_{t-1}
        norms = base.new_empty(2, k, G)  # |z_t| and max(|z_t|, eps)
        z = base.new_empty(plan.nv)  # z_t = W^T w_t, one step at a time
        part = base.new_empty(plan.n_partial)
        squares = base.new_empty(T)
        y = base.new_empty(plan.nm)
        for t in range(k + 1):  # t < k: w_{t+1} = W v_t and z_{t+1}; t = k: y = W v_k
            out = ws[t] if t < k else y
            before = dict(MODE=0, SRC=vs[0]) if t == 0 else dict(MODE=1, SRC=z, XOUT=vs[t], NOUT=norms[0, t - 1],
                                                                  COUT=norms[1, t - 1], STORE_X=True)
            _rows(base, plan, out, part, squares, eps, rows, WANT_PART=True, WANT_SQ=t == k, **before)
            if t < k:
                _pi_sum[(G, plan.chunks)](plan.meta, part, z, **sums)
        u, q, sigma = base.new_empty(plan.nm), base.new_empty(plan.nv), base.new_empty(G)
        _pi_finish[(G, plan.chunks)](plan.meta, squares, part, y, u, q, sigma, torch.finfo(torch.float32).tiny,
                                     BR=ROWS_PER_STEP, **sums)
        ctx.plan, ctx.n_iters, ctx.eps = plan, n_iters, eps
        ctx.save_for_backward(vs, ws, norms, u, q, *weights)
        v = vs[k]
        ctx.mark_non_differentiable(u, v)
        ctx.set_materialize_grads(False)
        return sigma, u, v

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_sigma, grad_u, grad_v):  # u, v are not differentiable
        plan, k, eps = ctx.plan, ctx.n_iters, ctx.eps
        vs, ws, norms, u, q, *weights = ctx.saved_tensors
        if grad_sigma is None or not any(ctx.needs_input_grad[4:]):
            return (None,) * (4 + len(weights))
        base = weights[plan.base]
        rows, sums = _launch_sizes(plan)
        G, T = plan.n_matrices, plan.n_tiles
        grad_sigma = grad_sigma.contiguous()
        dzs, dws = base.new_empty(k, plan.nv), base.new_empty(k, plan.nm)  # dz_t, dw_t of the steps t >= 2
        dv = base.new_empty(plan.nv)  # dv_t, one step at a time (t < k)
        part = base.new_empty(plan.n_partial) if k > 1 else dv
        for t in range(k, 1, -1):  # dw_t = W dz_t, dv_{t-1} = W^T dw_t
            _rows(base, plan, dws[t - 1], part, dv, eps, rows, MODE=2, FIRST=t == k, SRC=dv, V=vs[t], Q=q,
                  GSIGMA=grad_sigma, NORM=norms[0, t - 1], CLAMPED=norms[1, t - 1], XOUT=dzs[t - 1], STORE_X=True,
                  WANT_PART=True)
            _pi_sum[(G, plan.chunks)](plan.meta, part, dv, **sums)
        grad = base.new_empty(plan.grad_size)
        for position, offset in plan.grads:
            if position in plan.partly_read:
                grad[offset:offset + weights[position].numel()].zero_()
        _pi_grad[(T,)](base, plan.meta, plan.tiles, grad_sigma, u, q, dv, vs, ws, dzs, dws, norms[0, 0], norms[1, 0],
                       grad, plan.nv, plan.nm, eps, K=k, **rows)
        grads = [None] * len(weights)
        for position, offset in plan.grads:
            if ctx.needs_input_grad[4 + position]:
                weight = weights[position]
                grads[position] = grad[offset:offset + weight.numel()].view(weight.shape)
        return (None, None, None, None, *grads)


def _rows(base, plan, out, part, squares, eps, sizes, MODE, SRC, V=None, Q=None, GSIGMA=None, NORM=None,
          CLAMPED=None, XOUT=None, NOUT=None, COUT=None, FIRST=False, STORE_X=False, WANT_PART=False, WANT_SQ=False):
    """One launch of ``_pi_rows`` over every tile of ``plan`` (pointers a mode does not read: ``out``)."""
    unused = out
    _pi_rows[(plan.n_tiles,)](
        base, plan.meta, plan.tiles, SRC, *(unused if p is None else p for p in (V, Q, GSIGMA, NORM, CLAMPED, XOUT,
                                                                                  NOUT, COUT)),
        out, part, squares, eps, MODE=MODE, FIRST=FIRST, STORE_X=STORE_X, WANT_PART=WANT_PART, WANT_SQ=WANT_SQ, **sizes)


def fused_power_iteration(matrices, weights, starts, n_iters, eps=1e-12):
    """``({name: sigma [G]}, {name: (u [G, m], v [G, n])})``: ``n_iters`` power-iteration steps of every matrix of
    ``matrices`` (``(name, position in weights, first row, rows)`` each; the matrices of one name consecutive and of
    one shape), from ``starts`` (one ``[G, n]`` per name, in order): per name what
    :func:`recbole_sprint.model.sprint.estimate_spectral_norms` gives for that name's stacked matrices, from the
    kernels above. Check :func:`unusable_reason` first."""
    plan = _table(matrices, weights)
    if isinstance(plan, str):
        raise RuntimeError(f"sprint_power_impl: triton cannot run here: {plan}")
    sigma, u, v = _FusedPowerIteration.apply(plan, n_iters, eps, list(starts), *weights)
    norms, vectors = {}, {}
    for name, g0, g1, m0, n0, m, n in plan.estimators:
        count = g1 - g0
        norms[name] = sigma[g0:g1]
        vectors[name] = (u[m0:m0 + count * m].view(count, m), v[n0:n0 + count * n].view(count, n))
    return norms, vectors


def fused_spectral_norms(layout, weights, starts):
    """:func:`fused_power_iteration` of the matrices of ``layout`` (:func:`layout_matrices`)."""
    return fused_power_iteration(layout_matrices(layout, weights), weights, starts, layout.n_iters)

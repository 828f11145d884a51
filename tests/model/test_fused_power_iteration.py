"""``sprint_power_impl: triton``: every regularised matrix's power iteration in a few Triton kernels
(recbole_sprint/model/fused_power_iteration.py). The kernels run here under Triton's interpreter on the CPU against
the batched PyTorch path (values, new vectors, gradients; a whole model's training steps); they are compiled for
sm_90 without a GPU; the option's errors and its fall-back off CUDA."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from recbole_sprint.model.fused_attention import can_compile_ahead, compile_kernel_ahead
from recbole_sprint.model.fused_power_iteration import layout_matrices, triton, unusable_reason
from recbole_sprint.model.sequential_recommender.sasrecppsprint import SASRecPPSPRINT
from recbole_sprint.model.sprint import TermsLayout, check_sprint_config

from .test_sasrecpp import batch, build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INTERPRETER_CHECK = r"""
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
import torch
from recbole_sprint.model.sprint import TermsLayout, sprint_terms
from recbole_sprint.model import fused_power_iteration
from tests.conftest import tiny_config
from tests.model.test_sasrecpp import batch, build
from recbole_sprint.model.sequential_recommender.sasrecppsprint import SASRecPPSPRINT

L, H, d, inner, items, B, n = 2, 2, 24, 40, 70, 3, 5
result = {}
# small chunks, so that every loop of the kernels runs more than once on these small matrices (16 rows a tile: the
# environment of the test)
fused_power_iteration.COLUMN_CHUNK = fused_power_iteration.MATRIX_CHUNK = 16
fused_power_iteration._PARTIAL_ELEMENTS = 64


def layout(impl, k):
    # value heads from rows d .. 2d of a fused [3d, d] projection (HSTU-like): the other rows get no gradient
    return TermsLayout(0.3, 0.2, 0.1, 4.0, k, H, tuple((4 * l, d, 2 * d) for l in range(L)),
                       tuple(4 * l + 1 for l in range(L)), tuple(4 * l + 2 for l in range(L)),
                       tuple(4 * l + 3 for l in range(L)), 4 * L, ("value", "output", "ffn_in", "ffn_out", "embedding"),
                       impl)


def terms(impl, k, dtype, tiny_output=False):
    generator = torch.Generator().manual_seed(1)
    shapes = [(3 * d, d), (d, d), (inner, d), (d, inner)] * L + [(items, d)]
    weights = [torch.randn(*shape, generator=generator, dtype=dtype) for shape in shapes]
    if tiny_output:  # |W^T W v| < eps = 1e-12: the clamped normalisation, whose gradient differs
        weights[1] *= 1e-8
    weights = [weight.requires_grad_() for weight in weights]
    column_sums = torch.rand(L, B, H, n, generator=generator, dtype=dtype)
    key_mask = torch.rand(B, n, generator=generator) > 0.3
    starts = [torch.nn.functional.normalize(torch.randn(*shape, generator=generator, dtype=dtype), dim=-1)
              for shape in [(L * H, d), (L, d), (L, d), (L, inner), (1, d)]]
    attn, ffn, emb, vectors = sprint_terms(layout(impl, k), column_sums, key_mask, starts, weights)
    (attn + 2 * ffn + 3 * emb).backward()
    return [attn, ffn, emb, *[x for name in sorted(vectors) for x in vectors[name]], *[w.grad for w in weights]]


for dtype, k, tiny_output in ((torch.float64, 1, False), (torch.float64, 2, False), (torch.float64, 3, False),
                               (torch.float32, 1, False), (torch.float64, 2, True)):
    reference, fused = terms("torch", k, dtype, tiny_output), terms("triton", k, dtype, tiny_output)
    result[f"{dtype} k={k}" + " clamped" * tiny_output] = {
        "shapes": all(a.shape == b.shape for a, b in zip(reference, fused)),
        "difference": max(((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()
                          for a, b in zip(reference, fused)),
        "unread_rows_zero": all(float(grad[:d].abs().max()) == 0 == float(grad[2 * d:].abs().max())
                                and float(grad[d:2 * d].abs().max()) > 0 for grad in fused[-4 * L - 1::4][:L]),
    }

# a model's training steps: SASRec++-SPRINT, full-sequence BCE, Adam, every term on
runs = {}
with tempfile.TemporaryDirectory() as folder:
    for impl, compile_mode in (("torch", "none"), ("triton", "none"), ("triton", "aot_eager")):
        model = build(lambda **o: tiny_config(folder, **o), SASRecPPSPRINT, train_mode="full_sequence",
                      loss_type="BCE", num_negatives=4, sprint_power_impl=impl, sprint_compile=compile_mode,
                      hidden_dropout_prob=0.0, attn_dropout_prob=0.0).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(3):
            optimizer.zero_grad()
            loss = model.calculate_loss(batch())
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        runs[impl, compile_mode] = (losses, {k: v.detach().clone() for k, v in model.state_dict().items()})
losses_t, state_t = runs["torch", "none"]
for compile_mode in ("none", "aot_eager"):
    losses_f, state_f = runs["triton", compile_mode]
    result[f"model {compile_mode}"] = {
        "losses": [losses_t, losses_f],
        "weights": max(((state_t[k] - state_f[k]).abs().max() / state_t[k].abs().max().clamp_min(1e-12)).item()
                       for k in state_t if state_t[k].is_floating_point()),
        "plans": sum(not isinstance(table, str) for table in fused_power_iteration._TABLES.values())}
# a table recorded into a CUDA graph outlives the cache (the graph reads its addresses at every replay)
import gc, weakref
fused_power_iteration._capturing = lambda tensor: True  # as if recording
terms("triton", 1, torch.float32)
fused_power_iteration._capturing = lambda tensor: False
recorded = weakref.ref(fused_power_iteration._RECORDED[-1])
fused_power_iteration._TABLES.clear()
gc.collect()
result["recorded table kept"] = recorded() is not None and len(fused_power_iteration._RECORDED) == 1

# two Adam steps of RecBole's SASRec with SPRINT (BERT4RecSPRINT has the same blocks) and of HSTUSPRINT (W_V: rows
# of HSTU's fused projection)
from recbole_sprint.model.sequential_recommender.hstusprint import HSTUSPRINT
from recbole_sprint.model.sequential_recommender.sasrecsprint import SASRecSPRINT
from tests.model import test_hstu
cases = {
    "SASRecSPRINT": (lambda tiny, **o: build(tiny, SASRecSPRINT, **o), batch),
    "HSTUSPRINT": (lambda tiny, **o: test_hstu.build(tiny, HSTUSPRINT, **o),
                   lambda: test_hstu.batch(test_hstu.SEQS, test_hstu.TIMES)),
}
with tempfile.TemporaryDirectory() as folder:
    for name, (make, data) in cases.items():
        losses = {}
        for impl in ("torch", "triton"):
            model = make(lambda **o: tiny_config(folder, **o), sprint_power_impl=impl, hidden_dropout_prob=0.0,
                         attn_dropout_prob=0.0).train()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            losses[impl] = []
            for _ in range(2):
                optimizer.zero_grad()
                loss = model.calculate_loss(data())
                loss.backward()
                optimizer.step()
                losses[impl].append(loss.item())
        result[name] = [losses["torch"], losses["triton"]]
print(json.dumps(result))
"""


@pytest.mark.skipif(triton is None, reason="triton is not installed")
def test_fused_power_iteration_matches_the_batched_path_under_the_interpreter(tmp_path):
    """Float64 (one, two and three power-iteration steps; a matrix whose normalisation is clamped) and float32: the three
    terms, every estimator's new ``u``/``v`` and every weight's gradient equal the batched operators' up to the order
    of summation; rows of a fused projection that no matrix reads get gradient 0. Then three Adam steps of
    SASRec++-SPRINT (all three terms) give the same losses and weights with either implementation, and with the
    kernels under ``sprint_compile: aot_eager`` (the terms compiled around them); so do two steps of SASRecSPRINT and
    HSTUSPRINT. A matrix table used while a CUDA graph records stays alive after the cache drops it."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "RECBOLE_SPRINT_PI_ROWS": "16"}  # several tiles a matrix (and
    # the script makes the column chunks small: every loop of the kernels runs several times)
    result = subprocess.run([sys.executable, "-c", INTERPRETER_CHECK, REPO], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    for case in ("torch.float64 k=1", "torch.float64 k=2", "torch.float64 k=3", "torch.float32 k=1",
                 "torch.float64 k=2 clamped"):
        row = rows[case]
        assert row["shapes"] and row["unread_rows_zero"], (case, row)
        assert row["difference"] < (1e-12 if "float64" in case else 1e-5), (case, row)
    for compile_mode in ("none", "aot_eager"):  # aot_eager: torch.compile traces the terms around the kernels
        model = rows[f"model {compile_mode}"]
        assert model["losses"][0] == pytest.approx(model["losses"][1], rel=1e-5), compile_mode
        assert model["losses"][0][0] != model["losses"][0][2]  # it trained
        assert model["weights"] < 1e-4, (compile_mode, model)
        assert model["plans"] >= 1  # the kernels ran (the fall-back to the batched path makes no plan)
    assert rows["recorded table kept"]
    for name in ("SASRecSPRINT", "HSTUSPRINT"):
        assert rows[name][0] == pytest.approx(rows[name][1], rel=1e-5), (name, rows[name])
        assert rows[name][0][0] != rows[name][0][1], name


KERNELS = ("_pi_rows", "_pi_sum", "_pi_finish", "_pi_grad")


@pytest.mark.skipif(not can_compile_ahead(), reason="triton with its NVIDIA backend is not installed")
def test_kernels_compile_for_sm90():
    """The interpreter runs the kernels' Python, not Triton's compiler: each is compiled here to PTX for sm_90 (the
    H100 / H200), float32, at the launch's constants (every mode of the tile kernel, both values of each flag)."""
    from recbole_sprint.model import fused_power_iteration as fused

    types = dict(META="*i64", TILES="*i64", eps="fp32", tiny="fp32", NV="i64", NM="i64")
    bm, bn = fused.default_rows_per_tile(), fused.default_column_chunk()
    for mode, first in ((0, False), (1, False), (2, True), (2, False)):
        flags = dict(NMETA=len(fused._META), BM=bm, BN=bn, MODE=mode, FIRST=first, STORE_X=mode > 0,
                     WANT_PART=not first, WANT_SQ=first, CW=fused.MATRIX_CHUNK, RB=32, BR=fused.ROWS_PER_STEP,
                     K=1 if first else 2)
        for name in KERNELS if mode == 2 else ("_pi_rows",):
            compiled = compile_kernel_ahead(getattr(fused, name), flags, types, "*fp32",
                                            warps=fused.tile_warps(bm, bn))
            assert f".entry {name}" in compiled.asm["ptx"], name


@pytest.mark.parametrize("name, default, chosen, allowed", [
    ("RECBOLE_SPRINT_PI_ROWS", 16, 128, "16, 32, 64, 128, 256"),
    ("RECBOLE_SPRINT_PI_COLUMNS", 256, 64, "64, 128, 256, 512"),
])
def test_tile_shape_from_the_environment(monkeypatch, name, default, chosen, allowed):
    """The tile programs' rows and column chunk: a default, an allowed value from the environment, and an error that
    names the variable and its allowed values."""
    from recbole_sprint.model import fused_power_iteration as fused

    read = {"RECBOLE_SPRINT_PI_ROWS": fused.default_rows_per_tile,
            "RECBOLE_SPRINT_PI_COLUMNS": fused.default_column_chunk}[name]
    monkeypatch.delenv(name, raising=False)
    assert read() == default
    monkeypatch.setenv(name, str(chosen))
    assert read() == chosen
    monkeypatch.setenv(name, "48")
    with pytest.raises(ValueError, match=f"{name}='48': allowed values are {allowed}"):
        read()


def _layout(**overrides):
    fields = dict(attn_weight=1.0, ffn_weight=0.0, emb_weight=0.0, temperature=4.0, n_iters=1, n_heads=2,
                  value=((0, None, None),), output=(1,), ffn_in=(), ffn_out=(), embedding=None,
                  names=("value", "output"), power_impl="triton")
    return TermsLayout(**{**fields, **overrides})


def test_unusable_reasons_name_what_is_missing(monkeypatch):
    weights = [torch.randn(8, 6), torch.randn(6, 8)]
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = unusable_reason(layout_matrices(_layout(), weights), weights)
    assert ("CUDA" in reason) if triton is not None else (reason == "triton is not installed")
    if triton is None:
        return
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert unusable_reason(layout_matrices(_layout(), weights), weights) is None
    half = [w.bfloat16() for w in weights]
    assert "float32 or float64" in unusable_reason(layout_matrices(_layout(), half), half)
    # two estimators reading the same rows (a weight tied between value and output) cannot share one gradient buffer
    tied = [torch.randn(8, 8)]
    layout = _layout(output=(0,))
    assert "two matrices" in unusable_reason(layout_matrices(layout, tied), tied)
    # the value heads: one matrix per head, rows first .. end of the weight split in n_heads blocks
    assert layout_matrices(_layout(value=((0, 2, 6),)), weights)[:2] == (("value", 0, 2, 2), ("value", 0, 4, 2))


def test_config_errors_name_the_option_and_the_allowed_values():
    config = {"sprint_attn_weight": 1.0, "sprint_ffn_weight": 0.0, "sprint_emb_weight": 0.0, "sprint_temperature": 4.0,
              "sprint_compile": "none", "sprint_power_iters": 1}
    check_sprint_config({**config, "sprint_power_impl": "triton"})
    check_sprint_config(config)  # unset: torch
    check_sprint_config({**config, "sprint_power_impl": "auto"})
    with pytest.raises(ValueError, match="sprint_power_impl must be one of auto, torch, triton, got 'cuda'"):
        check_sprint_config({**config, "sprint_power_impl": "cuda"})
    for mode in ("default", "aot_eager", "cuda_graph", "inductor_cuda_graph"):
        check_sprint_config({**config, "sprint_power_impl": "triton", "sprint_compile": mode})


def test_off_cuda_the_option_warns_once_and_trains_like_torch(tiny, monkeypatch):
    """Off CUDA, ``triton`` falls back to the batched operators with one warning; ``auto`` (the default) does so
    without one. All three train alike."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    runs = {}
    for impl in ("torch", "triton", "auto"):
        model = build(tiny, SASRecPPSPRINT, train_mode="full_sequence", loss_type="BCE", num_negatives=4,
                      sprint_power_impl=impl).train()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = [model.calculate_loss(batch()) for _ in range(2)]
        runs[impl] = ([loss.item() for loss in losses], [str(w.message) for w in caught
                                                         if "sprint_power_impl" in str(w.message)])
        assert model.sprint.layout().power_impl == "torch", impl
    assert runs["triton"][0] == runs["torch"][0] == runs["auto"][0]
    assert runs["torch"][1] == [] == runs["auto"][1] and len(runs["triton"][1]) == 1
    assert "cannot run here" in runs["triton"][1][0] and "sprint_power_impl: torch" in runs["triton"][1][0]


def test_auto_picks_the_kernels_where_they_run(monkeypatch):
    """``auto`` resolves to ``triton`` for weights on a GPU of compute capability 8.0 or more that the kernels take, to
    ``torch`` otherwise: here the interpreter stands in for such a GPU (``on_gpu=True``, CPU tensors); weights the
    kernels refuse (bfloat16), the CPU and older GPUs (``on_gpu=False``, whatever the interpreter) get ``torch``."""
    from recbole_sprint.model.sprint import auto_power_impl, kernels_gpu

    weights = [torch.randn(8, 6), torch.randn(6, 8)]
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    layout = _layout(power_impl="auto")
    assert auto_power_impl(layout, weights, on_gpu=True) == ("torch" if triton is None else "triton")
    assert auto_power_impl(layout, weights, on_gpu=False) == "torch"
    half = [weight.bfloat16() for weight in weights]
    assert auto_power_impl(layout, half, on_gpu=True) == "torch"
    assert not kernels_gpu(torch.device("cpu"))
    kernels_gpu.cache_clear()  # the stand-in capabilities below must not outlive this test in the cache
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 0))
    try:
        assert not kernels_gpu(torch.device("cuda", 7))  # a V100
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
        assert kernels_gpu(torch.device("cuda", 6))
    finally:
        kernels_gpu.cache_clear()

"""The fused attention path (recbole_sprint/model/fused_attention.py): the block-wise algorithm against the dense
formula (outputs, column sums over valid queries, gradients of q, k, v with an upstream gradient on the column
sums, padding, dropout with a shared keep mask), the Triton kernels against it under TRITON_INTERPRET=1 (where
Triton is installed), and SASRecPP / SASRecPPSPRINT with ``attention_impl: fused`` against ``dense``."""

import json
import os
import subprocess
import sys

import pytest
import torch

from recbole_sprint.model.fused_attention import can_compile_ahead, fused_attention, triton_available
from recbole_sprint.model.layers import RotarySelfAttention
from recbole_sprint.model.sequential_recommender.sasrecpp import SASRecPP
from recbole_sprint.model.sequential_recommender.sasrecppsprint import SASRecPPSPRINT
from recbole_sprint.model.sprint import attention_column_sums

from .recbole_runs import SPRINT_OFF
from .test_sasrecpp import SEQS, batch, build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dense_attention(q, k, v, lengths, keep=None, dropout_p=0.0):
    """The dense path: the n x n matrix, masked softmax (as RotarySelfAttention), dropout, column sums (SPRINT)."""
    n = q.size(2)
    positions = torch.arange(n)
    allowed = (positions[None, :] <= positions[:, None])[None, None] & (positions < lengths[:, None])[:, None, None, :]
    scores = q @ k.transpose(-1, -2) / q.size(-1) ** 0.5
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    if keep is not None:
        probs = probs * keep / (1 - dropout_p)
    query_valid = positions[None, :] < lengths[:, None]
    return probs @ v, attention_column_sums(probs, query_valid)


def random_inputs(batch=3, heads=2, n=11, head_size=8, dtype=torch.float64, seed=0, strided=False):
    generator = torch.Generator().manual_seed(seed)
    if strided:  # [B, n, H, d] memory seen as [B, H, n, d], as the model's split_heads gives
        shape = (batch, n, heads, head_size)
        tensors = [torch.randn(shape, generator=generator, dtype=dtype).transpose(1, 2) for _ in range(3)]
    else:
        tensors = [torch.randn(batch, heads, n, head_size, generator=generator, dtype=dtype) for _ in range(3)]
    return [t.requires_grad_() for t in tensors]


def gradients(outputs, inputs, d_out, d_sums):
    out, sums = outputs
    return torch.autograd.grad((out * d_out).sum() + (sums * d_sums).sum(), inputs)


LENGTHS = torch.tensor([11, 7, 1])  # full, right-padded, a single item


@pytest.mark.parametrize("block", [4, 5, 64])  # several tiles with a partial last one; one tile
@pytest.mark.parametrize("strided", [False, True])
def test_blockwise_matches_dense_values_column_sums_and_gradients(block, strided):
    q, k, v = random_inputs(strided=strided)
    generator = torch.Generator().manual_seed(1)
    d_out = torch.randn(3, 2, 11, 8, generator=generator, dtype=torch.float64)
    d_sums = torch.randn(3, 2, 11, generator=generator, dtype=torch.float64)  # upstream gradient of c
    expected = dense_attention(q, k, v, LENGTHS)
    fused = fused_attention(q, k, v, LENGTHS, need_column_sums=True, backend="reference", block=block)
    for got, want in zip(fused, expected):
        assert torch.allclose(got, want, atol=1e-12)
    for got, want in zip(gradients(fused, (q, k, v), d_out, d_sums), gradients(expected, (q, k, v), d_out, d_sums)):
        assert torch.allclose(got, want, atol=1e-10)


def test_column_sums_leave_out_padding_queries_and_keys_and_sum_to_valid_rows():
    q, k, v = random_inputs()
    _, sums = fused_attention(q, k, v, LENGTHS, need_column_sums=True, backend="reference", block=4)
    assert torch.all(sums[1, :, 7:] == 0) and torch.all(sums[2, :, 1:] == 0)  # padding key columns
    # each valid query row sums to 1, so the column sums add up to the number of valid queries
    assert torch.allclose(sums.sum(-1), LENGTHS[:, None].double().expand(3, 2), atol=1e-12)


def test_column_sum_gradient_alone_reaches_q_and_k_but_not_v():
    """dL/dc only: dP~_ij = w_i g_j, so dV = 0 and dQ, dK follow from the softmax Jacobian with D_i = w_i sum P g."""
    q, k, v = random_inputs()
    g = torch.randn(3, 2, 11, dtype=torch.float64)
    _, sums = fused_attention(q, k, v, LENGTHS, need_column_sums=True, backend="reference", block=4)
    dq, dk, dv = torch.autograd.grad((sums * g).sum(), (q, k, v))
    _, dense_sums = dense_attention(q, k, v, LENGTHS)
    want = torch.autograd.grad((dense_sums * g).sum(), (q, k), allow_unused=True)
    assert torch.allclose(dq, want[0], atol=1e-10) and torch.allclose(dk, want[1], atol=1e-10)
    assert torch.all(dv == 0)


def test_dropout_with_a_shared_keep_mask_matches_the_dense_post_dropout_matrix():
    q, k, v = random_inputs()
    keep = torch.rand(3, 2, 11, 11, generator=torch.Generator().manual_seed(2)) >= 0.3
    d_out, d_sums = torch.randn(3, 2, 11, 8, dtype=torch.float64), torch.randn(3, 2, 11, dtype=torch.float64)
    expected = dense_attention(q, k, v, LENGTHS, keep=keep, dropout_p=0.3)
    fused = fused_attention(q, k, v, LENGTHS, dropout_p=0.3, need_column_sums=True, backend="reference", block=4,
                            keep=keep)
    for got, want in zip(fused, expected):
        assert torch.allclose(got, want, atol=1e-12)
    for got, want in zip(gradients(fused, (q, k, v), d_out, d_sums), gradients(expected, (q, k, v), d_out, d_sums)):
        assert torch.allclose(got, want, atol=1e-10)


def test_without_column_sums_returns_none_and_float32_and_bfloat16_run():
    for dtype, atol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        q, k, v = random_inputs(dtype=dtype)
        out, sums = fused_attention(q, k, v, LENGTHS, backend="reference", block=4)
        assert sums is None and out.dtype == dtype
        want, _ = dense_attention(q.double(), k.double(), v.double(), LENGTHS)
        assert torch.allclose(out.double(), want, atol=atol)
        out.float().sum().backward()
        assert q.grad.dtype == dtype and torch.isfinite(q.grad.float()).all()


def test_bad_arguments_raise():
    q, k, v = random_inputs()
    with pytest.raises(ValueError, match="backend"):
        fused_attention(q, k, v, LENGTHS, backend="cuda")
    with pytest.raises(ValueError, match="dropout_p"):
        fused_attention(q, k, v, LENGTHS, dropout_p=1.0)
    with pytest.raises(ValueError, match="keep_mask must be one of recompute, stored, got 'bits'"):
        fused_attention(q, k, v, LENGTHS, keep_mask="bits")


def test_tile_and_warp_defaults_and_their_environment_overrides_are_checked(monkeypatch):
    """32-wide tiles with 4 warps by default (what was timed fastest on the H200), 8 warps only for float32 64-wide
    tiles; the two environment variables override them, and a value the kernels cannot take is an error naming the
    variable and the allowed values."""
    from recbole_sprint.model.fused_attention import default_block, default_warps

    monkeypatch.delenv("RECBOLE_SPRINT_ATTN_BLOCK", raising=False)
    monkeypatch.delenv("RECBOLE_SPRINT_ATTN_WARPS", raising=False)
    assert default_block() == 32
    assert default_warps(torch.float32, 32) == 4 and default_warps(torch.bfloat16, 64) == 4
    assert default_warps(torch.float32, 64) == 8
    monkeypatch.setenv("RECBOLE_SPRINT_ATTN_BLOCK", "64")
    monkeypatch.setenv("RECBOLE_SPRINT_ATTN_WARPS", "2")
    assert default_block() == 64 and default_warps(torch.float32, 64) == 2
    monkeypatch.setenv("RECBOLE_SPRINT_ATTN_BLOCK", "48")
    with pytest.raises(ValueError, match=r"RECBOLE_SPRINT_ATTN_BLOCK='48': allowed values are 16, 32, 64, 128"):
        default_block()
    monkeypatch.setenv("RECBOLE_SPRINT_ATTN_WARPS", "eight")
    with pytest.raises(ValueError, match=r"RECBOLE_SPRINT_ATTN_WARPS='eight': allowed values are 1, 2, 4, 8, 16"):
        default_warps(torch.float32, 32)


def test_philox_rounds_default_to_ten_and_their_override_is_checked(monkeypatch):
    from recbole_sprint.model.fused_attention import default_philox_rounds

    monkeypatch.delenv("RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS", raising=False)
    assert default_philox_rounds() == 10  # Triton's tl.rand default: the masks of every earlier fused run
    monkeypatch.setenv("RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS", "7")
    assert default_philox_rounds() == 7
    monkeypatch.setenv("RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS", "5")
    with pytest.raises(ValueError, match=r"RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS='5': allowed values are 7, 8, 9, 10"):
        default_philox_rounds()


# -- the Triton kernels, run by Triton's interpreter on the CPU -------------------------------------------
INTERPRETER_CHECK = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from recbole_sprint.model.fused_attention import fused_attention, triton_dropout_keep_mask
from tests.model.test_fused_attention import dense_attention, gradients, random_inputs
lengths = torch.tensor([40, 23, 1, 17])
errors = {}
for strided, dropout_p, dtype in ((False, 0.0, torch.float32), (True, 0.25, torch.float32), (True, 0.0, torch.float16)):
    q, k, v = random_inputs(batch=4, heads=2, n=40, head_size=8, dtype=dtype, strided=strided)
    d_out, d_sums = torch.randn(4, 2, 40, 8, dtype=dtype), torch.randn(4, 2, 40)
    keep = triton_dropout_keep_mask(4, 2, 40, dropout_p, 1234, "cpu") if dropout_p else None
    fused = fused_attention(q, k, v, lengths, dropout_p=dropout_p, need_column_sums=True, backend="triton",
                            block=16, seed=1234)
    exact = [t.double().detach().requires_grad_() for t in (q, k, v)]
    want = dense_attention(*exact, lengths, keep=keep, dropout_p=dropout_p)
    got_grads = gradients(fused, (q, k, v), d_out, d_sums)
    want_grads = gradients(want, exact, d_out.double(), d_sums.double())
    name = f"strided={strided},p={dropout_p},{dtype}"
    errors[name] = [float((a.double() - b).abs().max() / b.abs().max().clamp_min(1))
                    for a, b in zip(list(fused) + list(got_grads), list(want) + list(want_grads))]
    if keep is not None:
        errors[name + ",kept"] = float(keep.float().mean())
        stored = fused_attention(q, k, v, lengths, dropout_p=dropout_p, need_column_sums=True, backend="triton",
                                 block=16, seed=1234, keep_mask="stored")
        pairs = zip(list(stored) + list(gradients(stored, (q, k, v), d_out, d_sums)), list(fused) + list(got_grads))
        errors[name + ",stored"] = [float((a - b).abs().max()) for a, b in pairs]
        default = fused_attention(q, k, v, lengths, dropout_p=dropout_p, need_column_sums=True, backend="triton",
                                  seed=1234)  # the default tiles (32 wide: two here, the last one partial)
        pairs = zip(list(default) + list(gradients(default, (q, k, v), d_out, d_sums)), list(want) + list(want_grads))
        errors[name + ",default tiles"] = [float((a.double() - b).abs().max() / b.abs().max().clamp_min(1))
                                           for a, b in pairs]
    if dtype == torch.float32 and not strided:  # the path without column sums (SPRINT off): no g in the backward
        out, none = fused_attention(q, k, v, lengths, backend="triton", block=16)
        assert none is None
        got = torch.autograd.grad((out * d_out).sum(), (q, k, v))
        want = torch.autograd.grad((dense_attention(*exact, lengths)[0] * d_out.double()).sum(), exact)
        dense_out = dense_attention(*exact, lengths)[0]
        pairs = zip([out, *got], [dense_out, *want])
        errors["no column sums"] = [float((a.double() - b).abs().max()) for a, b in pairs]
# Philox with 7 rounds (RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS): another mask, which every kernel applies alike
import os
keep10 = triton_dropout_keep_mask(4, 2, 40, 0.25, 1234, "cpu")
os.environ["RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS"] = "7"
keep7 = triton_dropout_keep_mask(4, 2, 40, 0.25, 1234, "cpu")
q, k, v = random_inputs(batch=4, heads=2, n=40, head_size=8, dtype=torch.float32, strided=False)
d_out, d_sums = torch.randn(4, 2, 40, 8), torch.randn(4, 2, 40)
fused = fused_attention(q, k, v, lengths, dropout_p=0.25, need_column_sums=True, backend="triton", block=16, seed=1234)
exact = [t.double().detach().requires_grad_() for t in (q, k, v)]
want = dense_attention(*exact, lengths, keep=keep7, dropout_p=0.25)
pairs = zip(list(fused) + list(gradients(fused, (q, k, v), d_out, d_sums)),
            list(want) + list(gradients(want, exact, d_out.double(), d_sums.double())))
errors["7 rounds"] = [float((a.double() - b).abs().max() / b.abs().max().clamp_min(1)) for a, b in pairs]
errors["7 rounds,kept"] = float(keep7.float().mean())
errors["7 rounds,differs"] = float((keep7 != keep10).float().mean())
# the seed as a device tensor (what the kernels load) and drawn from torch's generator when not given
os.environ.pop("RECBOLE_SPRINT_ATTN_PHILOX_ROUNDS")
run = lambda seed: fused_attention(q, k, v, lengths, dropout_p=0.25, need_column_sums=True, backend="triton",
                                   block=16, seed=seed)
as_int, as_tensor = run(1234), run(torch.tensor([1234]))
errors["tensor seed,stored"] = [float((a - b).abs().max()) for a, b in zip(as_int, as_tensor)] + [0.0] * 3
torch.manual_seed(7)
first = run(None)
torch.manual_seed(7)
again, other = run(None), run(None)
errors["drawn seed,stored"] = [float((a - b).abs().max()) for a, b in zip(first, again)] + [0.0] * 3
errors["drawn seed,differs"] = float((first[1] != other[1]).float().mean())  # another draw: other column sums
# four keep-mask entries a Philox call (RECBOLE_SPRINT_ATTN_PHILOX_VALUES=4): another mask, which every kernel applies
# alike, also the ones that transpose it, at 16- and 32-wide tiles, stored as bits too
os.environ["RECBOLE_SPRINT_ATTN_PHILOX_VALUES"] = "4"
keep4 = triton_dropout_keep_mask(4, 2, 40, 0.25, 1234, "cpu")
want = dense_attention(*exact, lengths, keep=keep4, dropout_p=0.25)
want_all = list(want) + list(gradients(want, exact, d_out.double(), d_sums.double()))
for block in (16, 32):
    fused = fused_attention(q, k, v, lengths, dropout_p=0.25, need_column_sums=True, backend="triton", block=block,
                            seed=1234)
    got = list(fused) + list(gradients(fused, (q, k, v), d_out, d_sums))
    errors[f"4 values,block {block}"] = [float((a.double() - b).abs().max() / b.abs().max().clamp_min(1))
                                         for a, b in zip(got, want_all)]
stored = fused_attention(q, k, v, lengths, dropout_p=0.25, need_column_sums=True, backend="triton", block=32,
                         seed=1234, keep_mask="stored")
errors["4 values,stored"] = [float((a - b).abs().max())
                             for a, b in zip(list(stored) + list(gradients(stored, (q, k, v), d_out, d_sums)), got)]
errors["4 values,kept"] = float(keep4.float().mean())
errors["4 values,differs"] = float((keep4 != keep10).float().mean())
groups = keep4.view(4, 2, 40, 10, 4)  # the four keys of one call
errors["4 values,alike"] = float((groups.all(-1) | (~groups).all(-1)).float().mean())
print(json.dumps(errors))
"""


@pytest.mark.skipif(not triton_available(), reason="triton is not installed (it ships with torch's CUDA builds)")
def test_triton_kernels_match_dense_under_the_interpreter():
    """Forward, column sums and the three gradients of the five kernels, with padding, several 16-wide tiles with a
    partial last one, head size 8 padded to 16, strided inputs, and in-kernel dropout (its keep mask read back by
    a helper kernel of the same Philox stream and given to the dense formula; with ``keep_mask="stored"``, the mask
    the forward kernel wrote as bits, the same numbers exactly; once at the default 32-wide tiles; and with 7 Philox
    rounds, another mask that every kernel applies alike; with four entries a Philox call, the same, at 16- and 32-wide
    tiles and stored, and its four entries of a call independent; the seed as a tensor equals the int seed, and a seed
    drawn from torch's generator repeats after the same ``torch.manual_seed``); float32 and
    float16 (the interpreter's tl.dot gets bfloat16 wrong, so the 16-bit case is float16: the same code path on a
    GPU)."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", INTERPRETER_CHECK, REPO], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(errors) == 19, errors
    for name, values in errors.items():
        if name == "4 values,alike":  # all four keys of a call kept or all dropped: 0.75^4 + 0.25^4 = 0.32 when the
            # four outputs are independent (1 if one value were copied to four keys)
            assert 0.25 < values < 0.4, (name, values)
        elif name == "drawn seed,differs":  # two seeds drawn one after the other give two masks (measured: 0.47 of
            # the column sums differ; the padding keys' are 0 under any mask)
            assert values > 0.3, (name, values)
        elif name.endswith(",differs"):  # two independent masks of keep rate 0.75 differ at 2 x 0.75 x 0.25 = 0.375
            assert 0.3 < values < 0.45, (name, values)
        elif name.endswith(",kept"):
            assert 0.7 < values < 0.8, (name, values)  # p = 0.25
        elif name.endswith(",stored"):  # out, column sums, dq, dk, dv: the recomputed mask's, to the last bit (seeds:
            # the int seed's numbers with its tensor, the same draw after the same torch.manual_seed; values only)
            assert values == [0.0] * 5, (name, values)
        else:  # relative to the largest value (at least 1): out, column sums, dq, dk, dv (",default tiles": the
            # same at the default tile size, which needs no `block` argument)
            assert max(values) < (1e-2 if "float16" in name else 1e-4), (name, values)


@pytest.mark.skipif(not can_compile_ahead(), reason="triton with its NVIDIA backend is not installed")
@pytest.mark.parametrize("dropout, stored, values", [(False, False, "1"), (True, True, "1"), (True, False, "4")])
def test_triton_kernels_compile_for_hopper_without_a_gpu(dropout, stored, values, monkeypatch):
    """The interpreter runs the kernels' Python, not Triton's compiler: each kernel is compiled here to PTX for sm_90
    (the H200) with float32 operands, TF32 dots and the default tiles and warps, without and with dropout (its keep
    mask stored as bits; drawn four entries a Philox call), the column-sum gradient on."""
    from recbole_sprint.model.fused_attention import KERNEL_NAMES, compile_ahead

    monkeypatch.setenv("RECBOLE_SPRINT_ATTN_PHILOX_VALUES", values)

    for name in KERNEL_NAMES:
        compiled = compile_ahead(name, dropout=dropout, stored=stored)
        assert ".entry " + name in compiled.asm["ptx"], name


# -- the model -------------------------------------------------------------------------------------------
def test_rotary_attention_fused_matches_dense_values_and_gradients():
    torch.manual_seed(0)
    dense = RotarySelfAttention(16, 2, 0.0)
    fused = RotarySelfAttention(16, 2, 0.0, attention_impl="fused")
    fused.load_state_dict(dense.state_dict())
    item_seq = torch.tensor(SEQS)
    x = torch.randn(2, 10, 16, requires_grad=True)
    from recbole_sprint.model.layers import rotary_cos_sin

    cos, sin = rotary_cos_sin(10, 8)
    out_dense = dense(x, cos, sin, SASRecPP.attention_mask(item_seq))
    out_fused = fused(x, cos, sin, (item_seq != 0).sum(1))
    assert torch.allclose(out_dense, out_fused, atol=1e-6)
    grad_dense = torch.autograd.grad(out_dense.square().sum(), [x, *dense.parameters()])
    grad_fused = torch.autograd.grad(out_fused.square().sum(), [x, *fused.parameters()])
    for a, b in zip(grad_dense, grad_fused):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("mode", [{"train_mode": "full_sequence", "loss_type": "BCE", "num_negatives": 4},
                                  {"train_mode": "prefix", "loss_type": "CE"}])
def test_fused_sasrecpp_and_weights_zero_sprint_match_dense(tiny, mode):
    """Loss and every parameter's gradient: SASRecPP fused vs dense, and SASRecPPSPRINT fused with weights 0 vs
    dense SASRecPP (no column sums asked for), attention dropout 0, same initial weights."""
    common = dict(n_heads=2, hidden_size=16, inner_size=64, n_layers=2, attn_dropout_prob=0.0, **mode)
    reference = build(tiny, SASRecPP, **common).train()
    for model_class, extra in ((SASRecPP, {}), (SASRecPPSPRINT, SPRINT_OFF)):
        model = build(tiny, model_class, attention_impl="fused", **common, **extra).train()
        model.load_state_dict(reference.state_dict(), strict=False)
        torch.manual_seed(5)  # the same BCE negatives for both
        want = reference.calculate_loss(batch())
        torch.manual_seed(5)
        got = model.calculate_loss(batch())
        assert torch.allclose(got, want, atol=1e-6)
        names = [name for name, _ in reference.named_parameters()]
        want_grads = torch.autograd.grad(want, list(reference.parameters()))
        got_grads = torch.autograd.grad(got, [dict(model.named_parameters())[name] for name in names])
        for name, a, b in zip(names, want_grads, got_grads):
            assert torch.allclose(a, b, atol=1e-5), name


def test_fused_sprint_takes_column_sums_from_the_kernel_and_matches_dense_sprint(tiny):
    """SPRINT on (every term): the fused model's regulariser reads the column sums the attention returns (no n x n
    matrix, no hook on attn_dropout) and gives the dense model's loss parts and gradients."""
    common = dict(n_heads=2, hidden_size=16, inner_size=64, n_layers=2, attn_dropout_prob=0.0,
                  train_mode="full_sequence", loss_type="BCE", num_negatives=4, sprint_attn_weight=5.0)
    dense = build(tiny, SASRecPPSPRINT, **common).train()
    fused = build(tiny, SASRecPPSPRINT, attention_impl="fused", **common).train()
    fused.load_state_dict(dense.state_dict())
    blocks = fused.sprint_blocks()
    assert all(block.probs_module is None and block.column_sums_module.wanted for block in blocks)
    assert not fused.layers[0].attention.attn_dropout._forward_hooks  # the dense hook point is not used
    losses, grads = [], []
    for model in (dense, fused):
        torch.manual_seed(5)
        loss = model.calculate_loss(batch())
        losses.append((loss, model.sprint.pop_epoch_parts()))
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    (loss_dense, parts_dense), (loss_fused, parts_fused) = losses
    assert parts_dense["sprint_attn"] > 0
    assert torch.allclose(loss_dense, loss_fused, atol=1e-6)
    for key in parts_dense:
        assert parts_fused[key] == pytest.approx(parts_dense[key], abs=1e-6)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_fused_sprint_soft_max_is_taken_over_post_dropout_column_sums(tiny):
    """With dropout the column sums are those of the matrix applied to V (the reference backend's keep mask)."""
    model = build(tiny, SASRecPPSPRINT, n_heads=2, hidden_size=16, attention_impl="fused", attn_dropout_prob=0.3,
                  sprint_temperature=2.0).train()
    captured = []
    model.layers[0].attention.column_sums.register_forward_hook(lambda m, i, out: captured.append(out))
    item_seq = torch.tensor(SEQS)
    model(item_seq)
    (sums,) = captured  # [B, H, n]
    lengths = (item_seq != 0).sum(1)
    assert torch.all(sums[0, :, 6:] == 0)
    assert not torch.allclose(sums.sum(-1), lengths[:, None].float().expand(2, 2))  # dropout: rows no longer sum to 1
    valid = item_seq != 0
    expected = torch.stack([torch.logsumexp(2.0 * sums[:, h][valid], 0) / 2.0 for h in range(2)])
    assert torch.allclose(model.sprint.soft_max()[0], expected, atol=1e-6)


def test_fused_model_evaluates_like_dense_and_rejects_unknown_impl(tiny):
    common = dict(n_heads=2, hidden_size=16, inner_size=64, n_layers=2, attn_dropout_prob=0.2)
    dense = build(tiny, SASRecPP, **common).eval()
    fused = build(tiny, SASRecPP, attention_impl="fused", **common).eval()
    fused.load_state_dict(dense.state_dict())
    with torch.no_grad():
        assert torch.allclose(dense.full_sort_predict(batch()), fused.full_sort_predict(batch()), atol=1e-5)
    with pytest.raises(ValueError, match="attention_impl"):
        build(tiny, SASRecPP, attention_impl="flash")


def test_attention_keep_mask_reaches_every_fused_call_and_is_checked(tiny, fused_keep_masks):
    """``attention_keep_mask`` (default ``recompute``) is what every layer's fused attention is called with; a value
    outside recompute / stored is refused, naming the option and the allowed values."""
    seen = fused_keep_masks
    common = dict(n_heads=2, hidden_size=16, inner_size=64, n_layers=2, attn_dropout_prob=0.2, attention_impl="fused")
    for value, expected in ((None, "recompute"), ("stored", "stored")):
        seen.clear()
        model = build(tiny, SASRecPPSPRINT, **common, **({} if value is None else {"attention_keep_mask": value}))
        model.train()(torch.tensor(SEQS))
        assert seen == [expected, expected]
    with pytest.raises(ValueError, match="attention_keep_mask must be one of recompute, stored for SASRecPP, got 'bits'"):
        build(tiny, SASRecPP, attention_keep_mask="bits")


def test_sprint_block_takes_exactly_one_source_of_column_sums_and_the_regulariser_marks_it_wanted(tiny):
    from torch import nn

    from recbole_sprint.model.sprint import ColumnSums, SprintBlock

    value, output = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    with pytest.raises(ValueError, match="exactly one of probs_module and column_sums_module"):
        SprintBlock(None, value, output, 1)
    with pytest.raises(ValueError, match="exactly one of probs_module and column_sums_module"):
        SprintBlock(nn.Dropout(0.0), value, output, 1, column_sums_module=ColumnSums())
    off = build(tiny, SASRecPPSPRINT, attention_impl="fused", **SPRINT_OFF).train()
    assert not any(layer.attention.column_sums.wanted for layer in off.layers)  # weights 0: never computed
    captured = []
    off.layers[0].attention.column_sums.register_forward_hook(lambda m, i, out: captured.append(out))
    off(torch.tensor(SEQS))
    assert captured == []


def test_lazy_sprint_asks_the_fused_attention_for_column_sums_only_on_its_steps(tiny):
    """sprint_every: 2 on the fused SASRec++: the kernel returns column sums on steps 0, 2, ... and not on the
    others, whose loss is the backbone's (the same weights with SPRINT off)."""
    common = dict(n_heads=2, hidden_size=16, inner_size=64, n_layers=2, attn_dropout_prob=0.0,
                  train_mode="full_sequence", loss_type="BCE", num_negatives=4, attention_impl="fused")
    model = build(tiny, SASRecPPSPRINT, sprint_every=2, **common).train()
    backbone = build(tiny, SASRecPPSPRINT, **SPRINT_OFF, **common).train()
    backbone.load_state_dict(model.state_dict())
    captured = []
    model.layers[0].attention.column_sums.register_forward_hook(lambda m, i, out: captured.append(out))
    for step in range(4):
        torch.manual_seed(step)
        loss = model.calculate_loss(batch())
        torch.manual_seed(step)
        plain = backbone.calculate_loss(batch())
        assert len(captured) == step // 2 + 1  # sums on steps 0 and 2 only
        if step % 2:
            assert torch.equal(loss, plain)
        else:
            assert loss.item() > plain.item()

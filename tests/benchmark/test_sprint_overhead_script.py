"""benchmarks/sprint_overhead.py: the timed alternation on CPU with a tiny model, and the issue-25 preset's table
(its subprocesses need CUDA, so their rows are given here) with the eager and compiled overheads computed from them."""

import re

import pytest

from recbole_sprint.model.fused_attention import can_compile_ahead

from .scripts import BENCHMARKS, load_benchmark_script


def test_cpu_rows_w0_and_sprint_and_the_overhead_line(capsys):
    script = load_benchmark_script("sprint_overhead")
    script.main(["--dataset", "ml-100k", "--n_layers", "2", "--hidden_size", "16", "--max_len", "10", "--steps", "2",
                 "--rounds", "2", "--every", "2", "--compile", "cuda_graph", "--profile", "2"])
    out = capsys.readouterr().out
    # --profile: per SPRINT variant, what it adds over w0, including the wall time per step
    assert "| SPRINT on - w0, on [full_sequence] | +ms/step | +calls/step |" in out
    assert "| SPRINT on - w0, on, every 2 [full_sequence] | +ms/step | +calls/step |" in out
    on_table = out.split("| SPRINT on - w0, on [full_sequence]", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"^\| \[wall\] \| [+-][0-9.]+ \| \+0 \|$", on_table, re.M)
    # the times come first: a profile cut short by a time limit loses only itself
    assert out.index("| on - w0 |") < out.index("| SPRINT on - w0, on [full_sequence]")
    w0, on, lazy = (float(re.search(rf"^\| {label} \| ([0-9.]+) \|$", out, re.M).group(1))
                    for label in ("w0", "on", "on, every 2"))
    line = re.search(r"^\| on - w0 \| ([+-][0-9.]+) \(([+-][0-9.]+)%\) \|$", out, re.M)
    # the three printed values are each rounded to 0.01
    assert w0 > 0 and on > 0 and lazy > 0 and float(line.group(1)) == pytest.approx(on - w0, abs=0.02)
    assert re.search(r"^\| on, every 2 - w0 \| [+-][0-9.]+ \([+-][0-9.]+%\) \|$", out, re.M)
    # --compile with --every: each mode alone and with every K (off CUDA, cuda_graph runs the terms eagerly)
    for label in ("on, compile cuda_graph", "on, compile cuda_graph, every 2"):
        assert re.search(rf"^\| {label} - w0 \| [+-][0-9.]+ \([+-][0-9.]+%\) \|$", out, re.M), label
    # the overhead paired round by round: median, smallest, largest, for every SPRINT variant
    assert "| overhead over w0, paired by round (2 rounds) | median | smallest | largest |" in out
    for label in ("on", "on, every 2", "on, compile cuda_graph", "on, compile cuda_graph, every 2"):
        median, low, high = (float(v) for v in re.search(
            rf"^\| {label} \| ([+-][0-9.]+)% \| ([+-][0-9.]+)% \| ([+-][0-9.]+)% \|$", out, re.M).groups())
        assert low <= median <= high, label


def test_count_ops_counts_each_phase_of_one_step(capsys):
    """--count_ops: SPRINT adds operators to the forward and the backward, none to the loss, and to the rest of the
    step only the read of its epoch parts at the epoch's end (the optimiser's work does not depend on the
    regulariser); with 2 layers the backbone dispatches more than with 1, the loss as many."""
    script = load_benchmark_script("sprint_overhead")
    counts = {}
    for layers in (1, 2):
        script.main(["--dataset", "ml-100k", "--n_layers", str(layers), "--hidden_size", "16", "--max_len", "10",
                     "--batch_size", "8", "--model", "SASRecPPSPRINT", "--count_ops"])
        out = capsys.readouterr().out
        assert "| variant | forward | loss | backward | rest | total |" in out
        for label in ("w0", "on"):
            values = re.search(rf"^\| {label} \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", out,
                               re.M).groups()
            counts[layers, label] = [int(v) for v in values]
    for layers in (1, 2):
        (forward, loss, backward, rest, _), on = counts[layers, "w0"], counts[layers, "on"]
        assert on[0] > forward > 0 and on[1] == loss > 0 and on[2] > backward > 0 and 0 <= on[3] - rest <= 2
        assert on[4] == sum(on[:4])
    assert counts[2, "w0"][0] > counts[1, "w0"][0] and counts[2, "w0"][1] == counts[1, "w0"][1]  # the loss: as many


def test_every_variant_is_timed_and_profiled_on_the_same_batches(monkeypatch):
    """The variants share one cached dataloader, which reshuffles on every pass: with a pass per variant and round,
    each would time other batches, whose lengths (hence work) differ. Every round of every variant, and the profile,
    must see the same batch objects."""
    script = load_benchmark_script("sprint_overhead")
    seen, build_variant = {}, script.build_variant

    def recording(*args):  # the real variant, its trainer's passes recorded instead of trained
        model, trainer, train_data = build_variant(*args)
        passes = seen.setdefault(id(trainer), [])
        trainer._train_epoch = lambda batches, epoch_idx, **kwargs: passes.append([id(batch) for batch in batches])
        return model, trainer, train_data

    monkeypatch.setattr(script, "build_variant", recording)
    args = script.parse_args(["--dataset", "ml-100k", "--n_layers", "1", "--hidden_size", "8", "--max_len", "10",
                              "--steps", "3", "--rounds", "2", "--profile", "2"])
    best, plan, rows, per_round = script.time_variants(args)
    script.profile_variants(args, rows, plan)
    assert len(rows) == 2 and len(seen) == 2  # w0 and on, each its own trainer
    for passes in seen.values():
        warm_up, round_1, round_2, profile = passes
        assert len(round_1) == 3 and round_1 == round_2 and profile == round_1[:2]
    first, second = seen.values()
    assert first[1:] == second[1:]  # and the other variant's passes, batch for batch


def test_profile_prints_every_variant_s_own_device_time(monkeypatch, capsys):
    """Besides SPRINT-minus-w0, the profile prints w0's own largest operators, and prints (and returns) each variant's
    own ``[wall]``, ``[total]`` and fused-attention kernels, in the plan's order, so that the backbones of two
    attentions can be set side by side."""
    script = load_benchmark_script("sprint_overhead")
    totals = iter([(7.0, 5.0), (9.5, 6.25)])  # (wall, total) of w0, then of on

    def profile_steps(options, trainer, batches):
        wall, total = next(totals)
        kernels = {"_attn_fwd": (0.5, 2.0), "_attn_column_sums": (0.25, 2.0)} if wall > 8 else {"_attn_fwd": (0.5, 2.0)}
        return {"[wall]": (wall, 0.0), "[total]": (total, 0.0), "aten::mm": (total / 2, 3.0), **kernels}

    monkeypatch.setattr(script.speed, "profile_steps", profile_steps)
    args = script.parse_args(["--dataset", "ml-100k", "--n_layers", "1", "--hidden_size", "8", "--max_len", "10",
                              "--steps", "2", "--rounds", "1", "--profile", "2"])
    best, plan, rows, per_round = script.time_variants(args)
    capsys.readouterr()
    result = script.profile_variants(args, rows, plan)
    out = capsys.readouterr().out
    assert result == {"w0": {"wall": 7.0, "total": 5.0, "_attn_fwd": 0.5},
                      "on": {"wall": 9.5, "total": 6.25, "_attn_fwd": 0.5, "_attn_column_sums": 0.25}}
    assert "| [total] | +1.250 | +0 |" in out  # the difference, as before
    w0_profile = out.index("| profile w0 [full_sequence] | ms/step | calls/step |")  # the backbone's own operators,
    assert "| aten::mm | 2.500 | 3 |" in out[w0_profile:out.index("| SPRINT on - w0")]  # largest first
    assert out.rstrip().endswith("| w0 | 7.000 | 5.000 | 0.500 |  |  |  |\n"
                                 "| on | 9.500 | 6.250 | 0.500 | 0.250 |  |  |")


@pytest.mark.skipif(not can_compile_ahead(), reason="triton with its NVIDIA backend is not installed")
def test_kernel_resources_reads_registers_and_spills_of_the_compiled_kernels(capsys):
    """The dQ kernel compiled for sm_90 at 64 x 16 warps has at most 65536 / 512 = 128 registers a thread (the
    hardware's share) and spills at that size; at 32 x 8 it has more registers and no local-memory traffic."""
    script = load_benchmark_script("sprint_overhead")
    rows = script.kernel_resources([(64, 16), (32, 8)], names=["_attn_bwd_dq"], variants=[(True, True, False)])
    wide, narrow = rows
    assert (wide["block"], wide["warps"], narrow["block"], narrow["warps"]) == (64, 16, 32, 8)
    assert wide["registers"] <= 128 and wide["stack_bytes"] > 0 and wide["local_ops"] > 0
    assert 128 < narrow["registers"] <= 255 and narrow["local_ops"] == 0
    # tensor-core instructions at both sizes (HGMMA at 64 x 16, HMMA at 32 x 8); integer arithmetic (indices, the
    # dropout's Philox rounds) is most of the code
    assert wide["tensor_core"] > 0 and narrow["tensor_core"] > 0 and narrow["integer"] > narrow["instructions"] / 3
    script.print_kernel_resources(rows)
    out = capsys.readouterr().out
    assert (f"| _attn_bwd_dq | 32 x 8 | yes | yes | recomputed | {narrow['registers']} | 0 | 0 | "
            f"{narrow['instructions']} | {narrow['integer']} | {narrow['tensor_core']} |") in out
    with pytest.raises(SystemExit, match="--kernel_resources takes BLOCKxWARPS"):
        script.main(["--kernel_resources", "64-8"])


def test_sass_opcodes_reads_predicated_and_plain_instructions():
    script = load_benchmark_script("sprint_overhead")
    sass = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;                      /* 0x00000a00ff017b82 */
        /*0010*/              @!P0 IMAD.WIDE.U32 R2, R4, 0x4, R2 ;             /* 0x0000000404028825 */
        /*0020*/               @PT HMMA.1688.F32.TF32 R8, R12, R16, R8 ;      /* 0x000000100c08723c */
        /*0030*/                   EXIT ;                                      /* 0x000000000000794d */
    """
    assert script.sass_opcodes(sass) == ["LDC", "IMAD", "HMMA", "EXIT"]


def test_power_iteration_times_both_backwards_and_compares_their_gradients(capsys):
    """``--power_iteration``: a row per shape with both times, the gradients' difference (float32: rounding only) and
    the operators each dispatches, the table printed; a malformed shape list is an error naming the option and the
    form."""
    script = load_benchmark_script("sprint_overhead")
    rows = script.time_power_iteration([(3, 16, 8), (2, 8, 24)], "cpu", rounds=2, steps=2)
    assert [row["shape"] for row in rows] == ["3x16x8", "2x8x24", "all"]
    shapes, every = rows[:2], rows[2]
    assert all(row["own_ms"] > 0 and row["autograd_ms"] > 0 and row["grad_difference"] < 1e-5 for row in shapes)
    # operators dispatched (forward, backward)
    assert all(row["own_operators"] == (9, 11) and row["autograd_operators"] == (7, 25) for row in shapes)
    # every shape at once, batched: two stacks and two chains forward (then the sums), the chains backward
    assert every["matrices"] == 5 and every["batched_ms"] > 0
    assert every["batched_operators"][0] >= 2 + 2 * 9 and every["batched_operators"][1] >= 2 * 11
    assert "CUDA" in every["fused_error"] or "triton" in every["fused_error"]  # the Triton kernels: CUDA only
    script.print_power_iteration(rows, "cpu")
    out = capsys.readouterr().out
    assert out.startswith("| one power-iteration step, forward + backward (cpu, float32) |") and "| 2x8x24 | " in out
    assert "| every shape at once (5 matrices, one step, cpu, float32) |" in out
    assert "| fused (sprint_power_impl: triton) | cannot run: " in out
    with pytest.raises(SystemExit, match="--power_iteration takes GxMxN"):
        script.main(["--power_iteration", "12x6144"])


def test_rounds_rotate_the_order_of_the_variants(monkeypatch):
    """Round r starts with variant r (mod their number): with two variants and three rounds the timed passes run
    w0, on | on, w0 | w0, on, so neither is always the one that follows the other."""
    script = load_benchmark_script("sprint_overhead")
    order, build_variant = [], script.build_variant

    def recording(*args):
        model, trainer, train_data = build_variant(*args)
        label = args[1]
        trainer._train_epoch = lambda batches, epoch_idx, **kwargs: order.append((label, epoch_idx))
        return model, trainer, train_data

    monkeypatch.setattr(script, "build_variant", recording)
    args = script.parse_args(["--dataset", "ml-100k", "--n_layers", "1", "--hidden_size", "8", "--max_len", "10",
                              "--steps", "2", "--rounds", "3"])
    best, plan, rows, per_round = script.time_variants(args)
    w0, on = list(rows)
    timed = [label for label, epoch_idx in order if epoch_idx == 1]  # epoch 0: the warm-up passes
    assert timed == [w0, on, on, w0, w0, on]
    assert all(len(rounds) == 3 for rounds in per_round.values())
    assert script.rotated(["a", "b", "c"], 4) == ["b", "c", "a"] and script.rotated([], 2) == []


def test_fixed_batches_replay_one_draw_per_loader_and_count():
    speed = load_benchmark_script("speed")

    class Reshuffling:  # a new draw on every pass, as RecBole's shuffled training loader
        shuffle, sampler, draws = True, None, 0

        def __iter__(self):
            Reshuffling.draws += 1
            return iter([object() for _ in range(5)])

    loader = Reshuffling()
    batches = speed.fixed_batches(loader, 3)
    assert len(batches) == 3 and list(batches) == list(batches) and Reshuffling.draws == 1
    assert speed.fixed_batches(loader, 3) is batches and speed.fixed_batches(loader, 2) is not batches
    assert batches.shuffle is True and batches.loader is loader


def test_round_overheads_pairs_each_round_with_w0_s_round():
    """Rounds (w0 10, on 11) and (w0 20, on 21): +10% and +5%, median 7.5; the fastest rounds alone (10 vs 11) would
    say +10%. A variant without its w0 (failed) and w0 itself get no line."""
    script = load_benchmark_script("sprint_overhead")
    plan = [("w0", "", "w0", {}, {}), ("on", "", "on", {}, {}), ("x on", "x", "on", {}, {})]
    spreads = script.round_overheads({"w0": [10.0, 20.0], "on": [11.0, 21.0], "x on": [5.0, 5.0]}, plan)
    assert list(spreads) == ["on"]
    assert spreads["on"] == pytest.approx((7.5, 5.0, 10.0))



def test_dense_separate_times_both_forms_of_the_dense_attention_in_one_run(monkeypatch, capsys):
    """--attention_impl dense,dense-separate: SASRec++'s dense attention as one autograd node and as two products,
    alternating in one process; each variant's epochs run through its own form (the module global is set again
    before each of them), and the separate form gives the node's values and gradients."""
    import torch

    from recbole_sprint.model import layers, sprint

    script = load_benchmark_script("sprint_overhead")
    monkeypatch.setattr(layers, "attend_with_column_sums", layers.attend_with_column_sums)  # restored afterwards
    calls = {"node": 0, "separate": 0}
    node, separate = sprint.attend_with_column_sums, script.separate_products

    def counted(name, function):
        def wrapper(*args):
            calls[name] += 1
            return function(*args)
        return wrapper

    monkeypatch.setattr(sprint, "attend_with_column_sums", counted("node", node))
    monkeypatch.setattr(script, "separate_products", counted("separate", separate))
    script.main(["--model", "SASRecPPSPRINT", "--dataset", "ml-100k", "--n_layers", "2", "--hidden_size", "16",
                 "--max_len", "10", "--steps", "2", "--rounds", "2", "--attention_impl", "dense,dense-separate"])
    out = capsys.readouterr().out
    for label in ("dense w0", "dense on", "dense-separate w0", "dense-separate on"):
        assert re.search(rf"^\| {label} \| [0-9.]+ \|$", out, re.M), label
    # SPRINT on only (w0 wants no column sums): warm-up 5 + 2 rounds x 2 steps, 2 layers each
    assert calls == {"node": 2 * 9, "separate": 2 * 9}

    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 2, 5, 5, dtype=torch.float64), -1).requires_grad_()
    value = torch.randn(2, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float64)
    grads = [torch.randn(2, 2, 5, 3, dtype=torch.float64), torch.randn(2, 2, 5, dtype=torch.float64)]
    results = []
    for form in (node, separate):
        outputs = form(probs, value, weights)
        results.append([*outputs, *torch.autograd.grad(outputs, (probs, value), grads)])
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-12)

def test_fused_stored_times_the_fused_attention_with_its_keep_mask_stored(fused_keep_masks, capsys):
    """--attention_impl fused,fused-stored: both are the model's ``fused`` attention, alternating in one process;
    every call of the attention made while a variant trains has that variant's keep mask (``recompute`` /
    ``stored``: the model option ``attention_keep_mask``)."""
    script = load_benchmark_script("sprint_overhead")
    seen = fused_keep_masks
    plan = script.variant_plan(script.parse_args(["--attention_impl", "fused,fused-stored"]))
    assert [(label, overrides["attention_impl"], overrides.get("attention_keep_mask"))
            for label, _, _, overrides, _ in plan] == [
        ("fused w0", "fused", None), ("fused on", "fused", None),
        ("fused-stored w0", "fused", "stored"), ("fused-stored on", "fused", "stored")]
    script.main(["--model", "SASRecPPSPRINT", "--dataset", "ml-100k", "--n_layers", "2", "--hidden_size", "16",
                 "--max_len", "10", "--steps", "2", "--rounds", "2", "--attention_impl", "fused,fused-stored"])
    out = capsys.readouterr().out
    for label in ("fused w0", "fused on", "fused-stored w0", "fused-stored on"):
        assert re.search(rf"^\| {label} \| [0-9.]+ \|$", out, re.M), label
    # every variant: warm-up 5 + 2 rounds x 2 steps, 2 layers each; rounds alternate, so the values interleave
    assert seen.count("recompute") == seen.count("stored") == 2 * 2 * 9
    assert "stored" in seen[:len(seen) // 2] and "recompute" in seen[len(seen) // 2:]


def test_run_child_keeps_rows_written_before_a_timeout(monkeypatch):
    """A child that wrote its JSON rows and then ran out of time (in its --profile) still gives its rows."""
    import json
    import subprocess

    script = load_benchmark_script("sprint_overhead")

    def run(command, timeout, **kwargs):
        with open(command[command.index("--json") + 1], "w") as handle:
            json.dump({"groups": [{"group": "dense", "w0": 30.0, "on": 31.0}]}, handle)
        raise subprocess.TimeoutExpired(command, timeout, output=b"timed rows\n")

    monkeypatch.setattr(script.subprocess, "run", run)
    rows, error = script.run_child(["--device", "cuda"], 5)
    assert rows == {"groups": [{"group": "dense", "w0": 30.0, "on": 31.0}]}
    assert error == "exit timeout after its rows were written"

    def run_without_rows(command, timeout, **kwargs):
        raise subprocess.TimeoutExpired(command, timeout, output=b"still loading\n")

    monkeypatch.setattr(script.subprocess, "run", run_without_rows)
    assert script.run_child(["--device", "cuda"], 5) == (None, "exit timeout: still loading")


def run_preset(monkeypatch, capsys, argv, answer):
    """The issue-25 preset with its subprocesses answered by ``answer(extra)``: ``(their options, printed output)``."""
    script = load_benchmark_script("sprint_overhead")
    calls = []

    def run_child(extra, timeout):
        calls.append(extra)
        return answer(extra)

    monkeypatch.setattr(script, "run_child", run_child)
    script.main(["--preset", "issue25", *argv])
    return calls, capsys.readouterr().out


def test_preset_table_with_the_compile_part(monkeypatch, capsys):
    def answer(extra):
        if "--memory" in extra:
            return {"memory": [{"label": "x w0", "ms": 1.0, "peak_gib": 2.0, "status": "ok"}]}, None
        if "--check_graphs" in extra:
            return {"graph_check": [{"attention": "dense", "variant": "backbone_compile", "losses": [[3.0, 2.5],
                                     [3.0, 2.5000001]], "graphs": 2, "max_rel_diff": 1.5e-7},
                                    {"attention": "fused", "variant": "both",
                                     "error": "both: RuntimeError: boom"}]}, None
        if "--compile" in extra:
            return {"groups": [{"group": "dense tf32 on", "w0": 40.0, "on": 48.0,
                                "on, compile inductor_cuda_graph": 42.0,
                                "on, compile cuda_graph": 40.4, "on, every 4": 42.0,
                                "on, compile inductor_cuda_graph, every 4": 40.8,
                                "on, compile cuda_graph, every 4": 40.2,
                                "on, compile cuda_graph, own graphs": 40.2,
                                "on, compile inductor_cuda_graph, own graphs": 40.0,
                                "on, compile cuda_graph, power torch": 44.0,
                                "on, compile inductor_cuda_graph, power torch": 43.0},
                               {"group": "fused tf32 on", "w0": 41.0, "on": 49.0,
                                "on, compile inductor_cuda_graph": 41.82, "on, compile cuda_graph": 41.41,
                                "on, every 4": 43.05, "on, compile inductor_cuda_graph, every 4": 41.41,
                                "on, compile cuda_graph, every 4": 41.205,
                                "on, compile cuda_graph, own graphs": 41.205,
                                "on, compile inductor_cuda_graph, own graphs": 41.0,
                                "on, compile cuda_graph, power torch": 42.64}]}, None
        return {"groups": [{"group": "dense tf32 off", "w0": 60.0, "on": 66.0},
                           {"group": "fused tf32 off", "w0": 120.0, "on": 130.0}]}, None

    calls, out = run_preset(monkeypatch, capsys, ["--parts", "ml-1m-3k,compile"], answer)
    # ml-1m-3k, then the compile part: the CUDA-graph check and its three settings (every mode, every 4, TF32 on)
    assert len(calls) == 5 and "--check_graphs" in calls[1]
    assert all(c[c.index("--compile") + 1] == "cuda_graph,inductor_cuda_graph" and c[c.index("--every") + 1] == "4"
               and c[c.index("--tf32") + 1] == "on" and c[c.index("--attention_impl") + 1] == "dense,fused"
               and "--own_graphs" in c and c[c.index("--power_impl") + 1] == "torch" and "--profile" not in c
               for c in calls[2:])
    assert "| dense | backbone_compile | 3.000000, 2.500000 | 3.000000, 2.500000 | 2 | 1.50e-07 |" in out
    assert "| fused | both | failed: both: RuntimeError: boom | | | |" in out
    assert ("| setting | attention, TF32 | w0 ms/step | SPRINT ms/step | SPRINT overhead | w0 vs dense | SPRINT vs dense "
            "| SPRINT CUDA graphs ms/step | overhead | SPRINT Inductor + CUDA graphs ms/step | overhead "
            "| SPRINT CUDA graphs, batched power iteration ms/step | overhead "
            "| SPRINT Inductor + CUDA graphs, batched power iteration ms/step | overhead "
            "| SPRINT CUDA graphs, own graphs ms/step | overhead "
            "| SPRINT Inductor + CUDA graphs, own graphs ms/step | overhead "
            "| SPRINT every 4 ms/step | overhead | SPRINT CUDA graphs + every 4 ms/step | overhead "
            "| SPRINT Inductor + CUDA graphs + every 4 ms/step | overhead |") in out
    assert ("| ml-1m-3k 8x256 n200 b128 CE | dense tf32 off | 60.00 | 66.00 | +10.0% |  |  " + "|  " * 18
            + "|") in out
    assert ("| ml-1m-3k 8x256 n200 b128 CE | fused tf32 off | 120.00 | 130.00 | +8.3% | 0.50x | 0.51x " + "|  " * 18
            + "|") in out
    assert ("| beauty 6x256 n50 b512 BCE16 (compile run) | fused tf32 on | 41.00 | 49.00 | +19.5% | 0.98x | 0.98x "
            "| 41.41 | +1.0% | 41.82 | +2.0% | 42.64 | +4.0% | failed |  | 41.20 | +0.5% | 41.00 | +0.0% "
            "| 43.05 | +5.0% | 41.20 | +0.5% | 41.41 | +1.0% |") in out


def test_preset_compile_part_times_the_modes_asked_for(monkeypatch, capsys):
    def answer(extra):
        if "--check_graphs" in extra:
            return None, "exit 1: no GPU"
        return {"groups": [{"group": "dense tf32 on", "w0": 40.0, "on": 48.0, "on, compile cuda_graph": 44.0,
                            "on, every 4": 42.0, "on, compile cuda_graph, every 4": 40.8,
                            "on, compile cuda_graph, own graphs": 42.4,
                            "on, compile cuda_graph, power torch": 46.0}]}, None

    calls, out = run_preset(monkeypatch, capsys, ["--parts", "compile", "--compile", "cuda_graph", "--attention_impl",
                                                  "dense", "--profile", "5"], answer)
    assert all(c[c.index("--compile") + 1] == "cuda_graph" and c[c.index("--attention_impl") + 1] == "dense"
               and c[c.index("--profile") + 1] == "5" for c in calls[1:]) and len(calls) == 4
    assert "| all | all | failed: exit 1: no GPU | | | |" in out
    assert all("--attn_dropout_prob" not in c for c in calls)  # the model's own unless asked for
    calls, _ = run_preset(monkeypatch, capsys, ["--parts", "compile,beauty-2", "--attn_dropout_prob", "0"], answer)
    timed = [c for c in calls if "--check_graphs" not in c]
    assert len(timed) == 4 and all(c[c.index("--attn_dropout_prob") + 1] == "0.0" for c in timed)
    assert ("| SPRINT vs dense | SPRINT CUDA graphs ms/step | overhead "
            "| SPRINT CUDA graphs, batched power iteration ms/step | overhead | SPRINT CUDA graphs, own graphs ms/step "
            "| overhead | SPRINT every 4 ms/step | overhead | SPRINT CUDA graphs + every 4 ms/step | overhead |") in out
    assert ("| beauty 2x256 n50 b512 BCE16 (compile run) | dense tf32 on | 40.00 | 48.00 | +20.0% |  |  | 44.00 | +10.0% "
            "| 46.00 | +15.0% | 42.40 | +6.0% | 42.00 | +5.0% | 40.80 | +2.0% |") in out


def test_graph_check_marks_the_rows_that_compare_other_negatives(capsys):
    """With a sampled loss the backbone's graphs draw other negatives than eager: those rows say so, the others not."""
    script = load_benchmark_script("sprint_overhead")
    assert script.draws_differ("BCE", "both") and script.draws_differ("sampled_softmax", "backbone_compile")
    assert not script.draws_differ("CE", "both") and not script.draws_differ("BCE", "sprint_compile")
    assert not script.draws_differ("BCE", "power triton")
    row = {"attention": "dense", "losses": [[3.0], [3.1]], "graphs": 2, "max_rel_diff": 0.5}
    script.print_graph_check([{**row, "variant": "sprint_compile"}])
    assert "other draws" not in capsys.readouterr().out
    script.print_graph_check([{**row, "variant": "sprint_compile"}, {**row, "variant": "both", "other_draws": True}])
    out = capsys.readouterr().out
    assert "| dense | both (other draws) | 3.000000 | 3.100000 | 2 | 5.00e-01 |" in out
    assert "| dense | sprint_compile | 3.000000 | 3.100000 | 2 | 5.00e-01 |" in out
    assert "compare two draws, not rounding" in out


def test_preset_names_the_allowed_parts():
    script = load_benchmark_script("sprint_overhead")
    with pytest.raises(SystemExit, match="--parts: unknown \\['beauty'\\]; allowed: check, ml-1m-3k, beauty-2, "
                                         "beauty-6, memory, compile"):
        script.main(["--preset", "issue25", "--parts", "beauty"])


def test_set_reaches_every_variant_and_every_timed_part_of_the_preset(monkeypatch, capsys):
    """--set KEY=VALUE: a config key for every variant (here the trainer's train_loss_sync), passed on by the preset
    to each timed part; the table's header names it."""
    script = load_benchmark_script("sprint_overhead")
    args = script.parse_args(["--dataset", "ml-100k", "--n_layers", "1", "--hidden_size", "16", "--max_len", "10",
                              "--set", "train_loss_sync=epoch"])
    assert args.settings == {"train_loss_sync": "epoch"}
    _, trainer, _ = script.build_variant(args, "w0", {}, script.variant_settings(None, None))
    assert trainer.loss_sync == "epoch"
    assert script.describe(args).endswith(", train_loss_sync=epoch")

    def answer(extra):
        return {"groups": [{"group": "dense tf32 on", "w0": 40.0, "on": 44.0}]}, None

    calls, out = run_preset(monkeypatch, capsys, ["--parts", "beauty-2", "--set", "train_loss_sync=epoch"], answer)
    assert len(calls) == 1 and calls[0][calls[0].index("--set") + 1] == "train_loss_sync=epoch"
    assert "train_loss_sync=epoch; parts beauty-2" in out


def test_count_ops_under_the_interpreter_counts_a_triton_launch_as_one_operator(tmp_path):
    """``TRITON_INTERPRET=1 ... --power_impl triton --count_ops`` (how the write-up counts the kernels' step on the
    CPU): each interpreted launch is one operator, the interpreter's own tensor work none, so SPRINT with the kernels
    dispatches fewer operators a step than with the batched chains (five kinds of matrix: ~100 operators for 7
    launches), the forward and the backward each."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    out = tmp_path / "rows.json"
    command = [sys.executable, os.path.join(BENCHMARKS, "sprint_overhead.py"), "--dataset", "ml-100k",
               "--n_layers", "2", "--hidden_size", "16", "--max_len", "10", "--batch_size", "8", "--model",
               "SASRecPPSPRINT", "--power_impl", "triton", "--count_ops", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "TRITON_INTERPRET": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["label"]: row for row in json.loads(out.read_text())["operators"]}
    w0, batched, fused = rows["w0"], rows["on"], rows["on, power triton"]
    for phase in ("forward", "backward"):
        assert w0[phase] < fused[phase] < batched[phase] - 20, (phase, rows)
    assert fused["loss"] == batched["loss"] == w0["loss"]


def test_own_graphs_rows_go_with_each_graph_mode():
    """--own_graphs adds, per --compile mode that records CUDA graphs, SPRINT with sprint_in_backbone_graph: False."""
    script = load_benchmark_script("sprint_overhead")
    plan = script.variant_plan(script.parse_args(["--compile", "default,cuda_graph,inductor_cuda_graph",
                                                  "--own_graphs"]))
    own = [(label, overrides) for label, _, _, overrides, _ in plan if "sprint_in_backbone_graph" in overrides]
    assert own == [("on, compile cuda_graph, own graphs", {"sprint_compile": "cuda_graph",
                                                           "sprint_in_backbone_graph": False}),
                   ("on, compile inductor_cuda_graph, own graphs", {"sprint_compile": "inductor_cuda_graph",
                                                                    "sprint_in_backbone_graph": False})]
    plan = script.variant_plan(script.parse_args(["--compile", "cuda_graph"]))
    assert not any("sprint_in_backbone_graph" in overrides for _, _, _, overrides, _ in plan)


def test_check_variants_picks_rows_in_order_and_names_the_allowed_ones():
    """``--check_variants`` runs the named rows of ``--check_graphs`` in the order given; an unknown name exits with
    the allowed ones. Every row that does not name the Triton power iteration uses the batched one (the default,
    ``auto``, would pick the kernels on CUDA), so its label keeps its meaning."""
    script = load_benchmark_script("sprint_overhead")
    args = script.parse_args(["--check_graphs", "--check_variants", "both; sprint_compile"])
    assert list(script.checked_variants(args)) == ["both", "sprint_compile"]
    assert list(script.checked_variants(script.parse_args(["--check_graphs"]))) == list(script.GRAPH_CHECK_VARIANTS)
    with pytest.raises(SystemExit, match=r"--check_variants: unknown \['bogus'\]; allowed: sprint_compile; "):
        script.checked_variants(script.parse_args(["--check_graphs", "--check_variants", "bogus"]))
    for name, settings in script.GRAPH_CHECK_VARIANTS.items():
        assert settings["sprint_power_impl"] == ("triton" if "power triton" in name else "torch"), name

"""SPRINT's per-step overhead over its own backbone (weights 0), with the two models timed in alternation.

    python benchmarks/sprint_overhead.py                       # CPU, host-bound tiny model (8 layers x 16)
    python benchmarks/sprint_overhead.py --device cuda --max_len 200 --hidden_size 256 --batch_size 128
    python benchmarks/sprint_overhead.py --device cuda --model SASRecPPSPRINT --attention_impl dense,fused --tf32 off,on
    python benchmarks/sprint_overhead.py --preset issue25      # CUDA: every issue-25 row in one run (below)

speed.py times its rows one after another, which a shared machine's drifting load turns into noise of tens of
percent on a small difference. Here both models train ``--steps`` steps in turn, ``--rounds`` times (each round
starting one variant later, so none always runs first or last), on the same ``--steps`` batches (drawn once and
replayed: a step's work follows its batch's lengths), and the fastest round of each counts; a second table gives
each SPRINT variant's overhead paired round by round (its round against w0's round of the same pass: median,
smallest, largest), the spread of the measurement within the run. The default configuration is tiny on purpose:
its arithmetic is negligible, so the difference measures the host time of SPRINT's extra operators (dispatch, autograd nodes, Python), which is what a small model on a fast GPU cannot
hide. The table is printed last.

Variants: ``--attention_impl`` (SASRecPP models: ``dense`` and/or ``fused``, the Triton attention that returns
SPRINT's column sums without the n x n matrix; recbole_sprint/model/fused_attention.py; ``dense-separate``, a
benchmark-only form of ``dense`` that computes ``P V`` and the column sums as two products, as before the twelfth
session, instead of one autograd node, so that the two forms are timed in one run; and ``fused-stored``, ``fused``
whose forward kernel stores the dropout keep mask as bits for the other kernels, ``attention_keep_mask: stored``,
instead of each drawing it again) times every listed
attention, ``--tf32`` (``off`` and/or ``on``: the trainer option ``tf32``, set again before every timed epoch)
every listed precision, each with SPRINT weights 0 ("w0") and the yaml defaults ("on"). A variant that fails (a
Triton kernel that does not compile, out of memory) prints its error and drops out; the others go on.

``--profile N`` then profiles N steps of every variant (torch.profiler) and prints w0's largest operators and, per
SPRINT variant, the operators it adds over its w0 (device time on CUDA); with the preset, its ``compile`` part
profiles.

``--check_graphs`` trains the model (loss ``--loss_type``) two epochs of ml-100k eagerly and with ``sprint_compile:
cuda_graph``, ``backbone_compile: cuda_graph`` and both, and with ``sprint_compile: inductor_cuda_graph`` alone and
with the backbone's graphs, and with ``sprint_power_impl: triton`` eagerly and under those graphs, from one
initialisation, and compares losses and weights (on CUDA; elsewhere the modes run eagerly); the eager run and every
row that does not name ``power triton`` use the batched power iterations (``sprint_power_impl: torch``).
``--check_variants 'NAME[;NAME]'`` runs only those rows, in that order. With a sampled loss (BCE, sampled softmax) the
rows with the backbone's graphs compare other negatives (``draws_differ``), and say so.

SPRINT's rows take the model's ``sprint_power_impl`` (``auto``: the Triton power iteration on CUDA, the batched
operators elsewhere); ``--power_impl torch,triton`` adds SPRINT with each, eagerly and with each ``--compile``
mode.

``--own_graphs`` adds SPRINT with ``sprint_in_backbone_graph: False`` for each ``--compile`` mode that records CUDA
graphs: with ``--backbone_compile cuda_graph``, SPRINT's terms in two graphs of their own, replayed after the
backbone's, instead of inside the backbone's two graphs (the default).

``--every K[,K]`` adds SPRINT with ``sprint_every: K`` (lazy regularisation: the terms on every K-th step, weighted
by K; give ``--steps`` a multiple of K); with ``--compile`` too, also each mode and each K together.

``--kernel_resources 64x8,32x8`` (no GPU needed) compiles the fused kernels for sm_90 at each tile size x warps and
prints their registers, stack and register-spill instructions (static facts, not times).

``--power_iteration GxMxN[,...]`` times one power-iteration step of ``G`` stacked ``M x N`` float32 matrices, forward
and backward (SPRINT's spectral norms, gradient through the iterate), with the plugin's own backward
(``power_iteration``) against autograd through the same operators (``power_iteration_reference``), in alternating
rounds on ``--device``, and prints the gradients' largest difference; then every shape at once, batched (stacked,
one chain per shape: ``sprint_power_impl: torch``) against the Triton kernels (``triton``, CUDA), and on CUDA each of
them (and the batched one compiled by Inductor) recorded as one CUDA graph, forward and backward, as SPRINT's graph
modes run them (``--pi_tiles 16x256,32x128``: also the kernels at those tile shapes). The 0.34B
configuration's regularised matrices:
``--power_iteration 288x64x1536,12x1536x1536,12x6144x1536,12x1536x6144`` (value heads, output, FFN in, FFN out).

``--check`` (CUDA) compares the Triton kernels with the dense formula in float64 on the device (output, column
sums, dq, dk, dv with an upstream gradient on the column sums; float32 exact and TF32, bfloat16; dropout with the
kernels' keep mask) and times the attention alone, dense vs fused, forward + backward. ``--memory`` runs each
variant for ``--steps`` steps one after another and reports its peak CUDA memory (out of memory is a row).

``--preset issue25`` (issue 25's settings, SASRecPPSPRINT, each part in a subprocess, so that a crash costs only
its own rows; ``--parts`` picks some): ``check``, the kernel check; ``ml-1m-3k``, 8 x 256 (4 heads), length 200,
batch 128, CE; ``beauty-2`` and ``beauty-6``, amazon-beauty, 2 and 6 layers x 256 (4 heads), length 50, batch 512,
BCE with 16 negatives; each dense and fused, TF32 off and on, w0 and SPRINT; ``memory``, length 1024, d 512
(8 heads), 8 layers, batch 64, CE, TF32, dense and fused, w0 and SPRINT; ``compile`` (not in the default
``--parts``: each compiled variant costs a compilation), ``--check_graphs``, then the three settings with TF32, dense
and fused, w0, SPRINT eager, SPRINT with ``sprint_compile: cuda_graph``, with ``inductor_cuda_graph`` (``--compile``
picks other modes), each of those with the batched power iteration (``--power_impl torch``) and in graphs of its own
(``--own_graphs``), and with ``sprint_every: 4``, and with
each mode and every 4 at once (``--attention_impl`` narrows the compile part's attentions; ``--profile N`` profiles
N steps of each of its variants after their times).
One table at the end. Triton's compiled kernels are cached on disk, so the check compiles most of what the timed
parts use.
"""

import argparse
import collections
import contextlib
import copy
import functools
import gc
import itertools
import json
import logging
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import unittest.mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import speed  # noqa: E402  (benchmarks/speed.py: config, data and model helpers)

from recbole_sprint.model.fused_power_iteration import POWER_IMPLS  # noqa: E402
from recbole_sprint.model.sprint import SPRINT_GRAPH_MODES  # noqa: E402

ISSUE25_SETTINGS = [
    ("ml-1m-3k 8x256 n200 b128 CE", ["--dataset", "ml-1m-3k", "--n_layers", "8", "--hidden_size", "256",
                                     "--n_heads", "4", "--max_len", "200", "--batch_size", "128", "--loss_type", "CE"]),
    ("beauty 2x256 n50 b512 BCE16", ["--dataset", "amazon-beauty", "--n_layers", "2", "--hidden_size", "256",
                                     "--n_heads", "4", "--max_len", "50", "--batch_size", "512", "--loss_type", "BCE",
                                     "--num_negatives", "16"]),
    ("beauty 6x256 n50 b512 BCE16", ["--dataset", "amazon-beauty", "--n_layers", "6", "--hidden_size", "256",
                                     "--n_heads", "4", "--max_len", "50", "--batch_size", "512", "--loss_type", "BCE",
                                     "--num_negatives", "16"]),
]
ISSUE25_MEMORY = ["--dataset", "ml-1m-3k", "--n_layers", "8", "--hidden_size", "512", "--n_heads", "8",
                  "--max_len", "1024", "--batch_size", "64", "--loss_type", "CE", "--tf32", "on", "--steps", "3"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SASRecSPRINT")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=os.path.join(speed.REPO, "..", "shared", "datasets"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--max_len", type=int, default=10)
    parser.add_argument("--n_layers", type=int, default=8)
    parser.add_argument("--hidden_size", type=int, default=16)
    parser.add_argument("--n_heads", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=8, help="users per full_sequence batch")
    parser.add_argument("--loss_type", default="CE", help="CE, BCE or sampled_softmax (full_sequence)")
    parser.add_argument("--num_negatives", type=int, default=None, help="BCE / sampled_softmax negatives")
    parser.add_argument("--attn_dropout_prob", type=float, default=None, help="default: the model's yaml")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (enable_amp)")
    parser.add_argument("--attention_impl", default="", metavar="IMPL[,IMPL]",
                        help="time each of dense,fused,dense-separate (SASRecPP models); default: the model's own")
    parser.add_argument("--tf32", default="", metavar="off|on[,...]", help="time each TF32 setting; default: config")
    parser.add_argument("--backbone_compile", default="", metavar="none|cuda_graph[,...]",
                        help="time each backbone_compile setting (the backbone's forward and backward as CUDA "
                             "graphs); default: config")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: less noise)")
    parser.add_argument("--compile", default="", metavar="MODE[,MODE]",
                        help="also time SPRINT with sprint_compile=MODE for each (e.g. cuda_graph,inductor_cuda_graph)")
    parser.add_argument("--power_impl", default="", metavar="IMPL[,IMPL]",
                        help="also time SPRINT with sprint_power_impl=IMPL for each (triton: the power iterations in "
                             "a few Triton kernels), eagerly and with each --compile mode")
    parser.add_argument("--own_graphs", action="store_true",
                        help="also time SPRINT with sprint_in_backbone_graph: False for each --compile mode that "
                             "records CUDA graphs (with --backbone_compile cuda_graph: SPRINT's terms in two graphs "
                             "of their own instead of the backbone's)")
    parser.add_argument("--every", default="", metavar="K[,K]",
                        help="also time SPRINT with sprint_every=K for each (lazy regularisation: the terms every K-th "
                             "step; use --steps a multiple of K)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after timing, profile N steps of each variant (the first N of the timed batches, "
                             "at most --steps) and list what SPRINT adds over w0")
    parser.add_argument("--profile_rows", type=int, default=14, help="operators listed per --profile table")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--memory", action="store_true", help="peak CUDA memory of each variant instead of timing")
    parser.add_argument("--count_ops", action="store_true",
                        help="count each variant's operators in one training step (forward, loss, backward, the "
                             "rest) instead of timing")
    parser.add_argument("--check", action="store_true", help="check and time the fused kernels on CUDA, then exit")
    parser.add_argument("--kernel_resources", default="", metavar="BLOCKxWARPS[,...]",
                        help="no GPU needed: compile the fused kernels for sm_90 at each tile size x warps (e.g. "
                             "64x8,32x8) and print their registers, stack and spill instructions, then exit")
    parser.add_argument("--power_iteration", default="", metavar="GxMxN[,...]",
                        help="time SPRINT's power-iteration step (forward + backward) with its own backward against "
                             "autograd's, for G stacked M x N matrices each, then exit")
    parser.add_argument("--check_variants", default="", metavar="NAME[;NAME]",
                        help="--check_graphs: only these variants, in this order (default: all)")
    parser.add_argument("--pi_tiles", default="", metavar="ROWSxCOLUMNS[,...]",
                        help="--power_iteration on CUDA: also the fused kernels recorded at each tile shape")
    parser.add_argument("--check_graphs", action="store_true",
                        help="CUDA: train eagerly and with CUDA graphs (sprint_compile, backbone_compile, both) and "
                             "compare, then exit")
    parser.add_argument("--preset", choices=["issue25"], default=None, help="run a set of rows (see above)")
    parser.add_argument("--json", default="", help="also write the result rows to this file")
    parser.add_argument("--timeout", type=int, default=1200, help="--preset: seconds per subprocess")
    parser.add_argument("--parts", default="check,ml-1m-3k,beauty-2,beauty-6,memory",
                        help="--preset issue25: which parts to run (comma-separated)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_items",
                        help="a config key for every variant, VALUE read as YAML (repeatable; the preset passes it to "
                             "its parts), e.g. --set train_loss_sync=epoch --set train_pin_memory=true")
    args = parser.parse_args(argv)
    args.settings = speed.parse_settings(args.set_items)
    # speed.base_config's remaining options
    args.inner_size, args.full_batch_size = 4 * args.hidden_size, args.batch_size
    return args


# -- variants --------------------------------------------------------------------------------------------
SEPARATE = "dense-separate"  # --attention_impl: the dense attention with P V and the column sums as two products
STORED_KEEP = "fused-stored"  # --attention_impl: the fused attention with its dropout keep mask stored as bits


def model_attention(impl):
    """The model's ``attention_impl`` for an ``--attention_impl`` entry (``dense-separate`` is ``dense`` to the model,
    ``fused-stored`` is ``fused``)."""
    return {SEPARATE: "dense", STORED_KEEP: "fused"}.get(impl, impl)


def variant_settings(tf32, impl):
    """The ``settings`` of :func:`apply_settings` for a TF32 value (``None``: the config's) and an attention entry."""
    return tf32, impl == SEPARATE


def separate_products(probs, value, query_weights):
    """``P V`` and SPRINT's column sums as two autograd products (the dense path before the one-node form)."""
    from recbole_sprint.model.sprint import attention_column_sums

    return torch.matmul(probs, value), attention_column_sums(probs, query_weights)


def apply_settings(settings):
    """A variant's process-wide settings ``(tf32 or None, separate)``, set again before each of its epochs (the
    variants of one run alternate): TF32, and which form SASRecPP's dense attention uses (module global, looked up
    at every call)."""
    from recbole_sprint.model import layers, sprint

    tf32, separate = settings
    set_tf32(tf32)
    layers.attend_with_column_sums = separate_products if separate else sprint.attend_with_column_sums


def variant_plan(args):
    """``[(label, group, sprint, overrides, settings)]``: every attention x TF32 x backbone_compile setting, w0 and
    SPRINT on; ``settings`` is :func:`variant_settings`'s, for :func:`apply_settings`."""
    impls = [s for s in args.attention_impl.split(",") if s] or [None]
    tf32s = [s for s in args.tf32.split(",") if s] or [None]
    for value in tf32s:
        if value not in (None, "off", "on"):
            raise SystemExit(f"--tf32 takes off and/or on, got {value!r}")
    backbones = [s for s in args.backbone_compile.split(",") if s] or [None]
    for value in backbones:
        if value not in (None, "none", "cuda_graph"):
            raise SystemExit(f"--backbone_compile takes none and/or cuda_graph, got {value!r}")
    powers = [s for s in args.power_impl.split(",") if s]
    for value in powers:
        if value not in POWER_IMPLS:
            raise SystemExit(f"--power_impl takes {' and/or '.join(POWER_IMPLS)}, got {value!r}")
    extra = {}
    if args.num_negatives is not None:
        extra["num_negatives"] = args.num_negatives
    if args.attn_dropout_prob is not None:
        extra["attn_dropout_prob"] = args.attn_dropout_prob
    plan = []
    for impl, tf32, backbone in itertools.product(impls, tf32s, backbones):
        group = " ".join(filter(None, [impl, f"tf32 {tf32}" if tf32 else None,
                                       "backbone graphs" if backbone == "cuda_graph" else None]))
        base = dict(extra)
        if backbone:
            base["backbone_compile"] = backbone
        if impl:
            base["attention_impl"] = model_attention(impl)
        if impl == STORED_KEEP:
            base["attention_keep_mask"] = "stored"
        if tf32:
            base["tf32"] = tf32 == "on"
        settings = variant_settings(None if tf32 is None else tf32 == "on", impl)
        plan.append((w0_label(group), group, "w0", {**base, **speed.SPRINT_OFF}, settings))
        plan.append((" ".join(filter(None, [group, "on"])), group, "on", base, settings))
        for mode in filter(None, args.compile.split(",")):
            plan.append((" ".join(filter(None, [group, f"on, compile {mode}"])), group, f"on, compile {mode}",
                         {**base, "sprint_compile": mode}, settings))
            if args.own_graphs and mode in SPRINT_GRAPH_MODES:
                label = f"on, compile {mode}, own graphs"
                plan.append((" ".join(filter(None, [group, label])), group, label,
                             {**base, "sprint_compile": mode, "sprint_in_backbone_graph": False}, settings))
        for every in filter(None, args.every.split(",")):
            plan.append((" ".join(filter(None, [group, f"on, every {every}"])), group, f"on, every {every}",
                         {**base, "sprint_every": int(every)}, settings))
        for power in powers:  # eagerly, and with each --compile mode it goes with
            for mode in [None, *filter(None, args.compile.split(","))]:
                label = ", ".join(filter(None, ["on", mode and f"compile {mode}", f"power {power}"]))
                plan.append((" ".join(filter(None, [group, label])), group, label,
                             {**base, "sprint_power_impl": power, **({"sprint_compile": mode} if mode else {})},
                             settings))
        for mode in filter(None, args.compile.split(",")):  # both levers at once
            for every in filter(None, args.every.split(",")):
                label = f"on, compile {mode}, every {every}"
                plan.append((" ".join(filter(None, [group, label])), group, label,
                             {**base, "sprint_compile": mode, "sprint_every": int(every)}, settings))
    return plan


def set_tf32(flag):
    if flag is not None:
        from recbole_sprint.trainer.optimisation import set_tf32 as set_flag

        set_flag(flag)


def first_line(error):
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:300]}"


def build_variant(args, label, overrides, settings):
    config = speed.base_config(args, args.model, "full_sequence", overrides, enable_amp=args.amp)
    train_data = speed.prepared_data(config, "full_sequence")[0]
    apply_settings(settings)
    model, trainer = speed.build(config, train_data)
    return model, trainer, train_data


def w0_label(group):
    """The label of a group's weights-0 variant (``"w0"``, or ``"<group> w0"``)."""
    return " ".join(filter(None, [group, "w0"]))


def rotated(labels, round_index):
    """``labels`` starting at ``round_index`` (mod their number): round r times the variants in the order r, r+1, ...,
    so none is always first (after the previous round's last) or always last."""
    start = round_index % len(labels) if labels else 0
    return labels[start:] + labels[:start]


def time_variants(args):
    """Alternating rounds (see the module docstring); ``{label: ms/step}`` (fastest round), the plan, the built
    variants and ``{label: [ms/step of each round]}`` (a variant that fails while timed drops out of all three)."""
    plan = variant_plan(args)
    rows = {}
    for label, _, _, overrides, settings in plan:
        try:
            _, trainer, train_data = build_variant(args, label, overrides, settings)
            apply_settings(settings)
            trainer._train_epoch(speed.FirstBatches(train_data, 5), 0)  # warm-up (and compilation)
            speed.synchronize(args.device)
        except Exception as error:  # one failing variant must not cost the others' timings
            print(f"  {label}: failed in warm-up: {first_line(error)}", flush=True)
            continue
        rows[label] = (trainer, speed.fixed_batches(train_data, args.steps), settings)  # every variant, every round
    best = {label: float("inf") for label in rows}
    per_round = {label: [] for label in rows}
    for round_index in range(args.rounds):
        for label in rotated(list(rows), round_index):  # each variant in each place of the order in turn
            trainer, batches, settings = rows[label]
            try:
                apply_settings(settings)
                speed.synchronize(args.device)
                start = time.perf_counter()
                trainer._train_epoch(batches, 1)
                speed.synchronize(args.device)
            except Exception as error:
                print(f"  {label}: failed while timed: {first_line(error)}", flush=True)
                del rows[label], best[label], per_round[label]
                continue
            per_round[label].append((time.perf_counter() - start) / len(batches) * 1e3)
            best[label] = min(best[label], per_round[label][-1])
    return best, plan, rows, per_round


def profile_variants(args, rows, plan):
    """``--profile N``: N training steps of every timed variant under torch.profiler, then per w0 its largest
    operators, per SPRINT variant the operators it adds over its group's w0 (device time per step on CUDA, CPU time
    on the CPU; ``[wall]`` against ``[total]`` shows how much of the step the device sat idle), from
    benchmarks/speed.py; then every variant's own ``[wall]``, ``[total]`` and fused-attention kernels (so that two
    w0s, e.g. two attentions' backbones, or two processes with other tile sizes, compare too). Returns
    ``{label: {"wall": ms, "total": ms, kernel: ms}}`` per step (a kernel the variant does not launch is left out)."""
    options = argparse.Namespace(profile_steps=args.profile, device=args.device)
    profiles = {}
    for label, (trainer, batches, settings) in rows.items():
        apply_settings(settings)
        profiles[label] = speed.profile_steps(options, trainer, batches)  # the timed batches: the same work
    for label, group, sprint, _, _ in plan:
        w0 = w0_label(group)
        if sprint == "w0" and label in profiles:  # the backbone's own largest operators: where its step goes
            speed.print_profile(label, "full_sequence", profiles[label], args.profile_rows)
        elif label in profiles and w0 in profiles:
            speed.print_profile_diff(profiles[label], profiles[w0], label, "full_sequence", args.profile_rows)
    from recbole_sprint.model.fused_attention import KERNEL_NAMES

    totals = {label: {"wall": profiles[label]["[wall]"][0], "total": profiles[label]["[total]"][0],
                      **{name: profiles[label][name][0] for name in KERNEL_NAMES if name in profiles[label]}}
              for label, *_ in plan if label in profiles}
    busy = "device" if args.device == "cuda" else "host"
    print()
    print(f"| profiled variant ({args.profile} steps) | [wall] ms/step | [total] ms/step ({busy} busy) | "
          + " | ".join(KERNEL_NAMES) + " |")
    print("|---" * (3 + len(KERNEL_NAMES)) + "|")
    for label, row in totals.items():
        kernels = " | ".join(f"{row[name]:.3f}" if name in row else "" for name in KERNEL_NAMES)
        print(f"| {label} | {row['wall']:.3f} | {row['total']:.3f} | {kernels} |")
    return totals


def memory_variants(args):
    """Each variant alone: peak CUDA memory over building it and ``--steps`` training steps, and ms/step."""
    results = []
    for label, group, sprint, overrides, settings in variant_plan(args):
        gc.collect()
        if args.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        row = {"label": label, "group": group, "sprint": sprint}
        try:
            _, trainer, train_data = build_variant(args, label, overrides, settings)
            apply_settings(settings)
            trainer._train_epoch(speed.FirstBatches(train_data, 1), 0)
            speed.synchronize(args.device)
            batches = speed.fixed_batches(train_data, args.steps)
            start = time.perf_counter()
            trainer._train_epoch(batches, 1)
            speed.synchronize(args.device)
            row["ms"] = (time.perf_counter() - start) / len(batches) * 1e3
            row["status"] = "ok"
        except torch.OutOfMemoryError:
            row["status"] = "out of memory"
        except Exception as error:
            row["status"] = first_line(error)
        if args.device == "cuda":
            row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        trainer = train_data = None  # noqa: F841  (free before the next variant)
        print(f"  {label}: {row['status']}, peak {row.get('peak_gib', float('nan')):.1f} GiB", flush=True)
        results.append(row)
    return results


OPERATOR_PHASES = ("forward", "loss", "backward", "rest")


def dispatch_counter(key):
    """A ``TorchDispatchMode`` that counts the ATen operators dispatched under it (below autograd, so a backward's too)
    in its ``counts`` by ``key(func)`` (``None``: not counted)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counting(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.counts = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = key(func)
            if name is not None:
                self.counts[name] += 1
            return func(*args, **(kwargs or {}))

    return Counting()


def operators_dispatched(run):
    """``(result of run(), {operator: count})``: the ATen operators ``run`` dispatches (below autograd, so a backward's
    too), views left out (they launch no kernel)."""
    counting = dispatch_counter(lambda func: None if func.is_view else func.overloadpacket.__name__)
    with counting:
        result = run()
    return result, dict(counting.counts)


@contextlib.contextmanager
def interpreted_launches_counted_once():
    """Under Triton's interpreter (``TRITON_INTERPRET=1``: ``sprint_power_impl: triton`` on the CPU), each kernel
    launch counts as one operator of the active counter (``aten.alias``, a stand-in), and the tensor operators the
    interpreter itself runs are not counted; elsewhere nothing changes."""
    from recbole_sprint.model.fused_power_iteration import interpreting, triton

    if triton is None or not interpreting():
        yield
        return
    from torch.utils._python_dispatch import _disable_current_modes, _get_current_dispatch_mode
    from triton.runtime import interpreter

    launch = interpreter.InterpretedFunction.run

    def counted(self, *args, **kwargs):
        mode = _get_current_dispatch_mode()
        with _disable_current_modes():
            result = launch(self, *args, **kwargs)
        if mode is not None:
            mode.__torch_dispatch__(torch.ops.aten.alias.default, (), (torch.empty(0),), {})
        return result

    interpreter.InterpretedFunction.run = counted
    try:
        yield
    finally:
        interpreter.InterpretedFunction.run = launch


def count_operators(args):
    """``--count_ops``: per variant, the ATen operators one training step dispatches (below autograd, so the backward's
    too; on CUDA each is about one kernel launch, the host work a small model's GPU step is bound by), in four
    phases: the model's ``calculate_loss`` without its full-sequence loss module (the backbone's forward; SPRINT's
    terms), that loss module (``full_sequence``: its negatives and scores), autograd's backward pass, and the rest
    of the trainer's step (batch copy, ``zero_grad``, clipping, the optimiser). One step after two warm-up steps (graphs
    record in those), on a batch of ``--batch_size`` users. Returns ``[{label, phase: count, ...}]``."""
    def phase(state):
        if torch._C._current_graph_task_id() != -1:
            return "backward"
        if state["in_loss"]:
            return "loss" if state["in_loss_module"] else "forward"
        return "rest"

    rows = []
    for label, _, _, overrides, settings in variant_plan(args):
        try:
            model, trainer, train_data = build_variant(args, label, overrides, settings)
            apply_settings(settings)
            warm_up, step = (copy.copy(speed.fixed_batches(train_data, 3)) for _ in range(2))
            warm_up.batches, step.batches = warm_up.batches[:2], step.batches[2:]
            trainer._train_epoch(warm_up, 0)
            state = {"in_loss": False, "in_loss_module": False}
            counting = dispatch_counter(lambda func, state=state: phase(state))
            loss_func = model.calculate_loss
            loss_module = getattr(model, "full_sequence_loss", None)
            if loss_module is not None:
                loss_module.register_forward_pre_hook(lambda *_, s=state: s.update(in_loss_module=True))
                loss_module.register_forward_hook(lambda *_, s=state: s.update(in_loss_module=False))

            def counted_loss(interaction, loss_func=loss_func, state=state):
                state["in_loss"] = True
                try:
                    return loss_func(interaction)
                finally:
                    state["in_loss"] = False

            with counting, interpreted_launches_counted_once():
                trainer._train_epoch(step, 1, loss_func=counted_loss)
            speed.synchronize(args.device)
            rows.append({"label": label, **{name: counting.counts[name] for name in OPERATOR_PHASES}})
        except Exception as error:
            rows.append({"label": label, "error": first_line(error)})
        print(f"  {rows[-1]}", flush=True)
    return rows


def print_operator_counts(args, rows):
    print()
    print(f"# {args.model}, {args.dataset}, {args.n_layers} layers x {args.hidden_size}, len {args.max_len}, batch "
          f"{args.batch_size}, loss {args.loss_type}, {args.device} ({describe(args)}): ATen operators in one "
          "training step")
    print("| variant | " + " | ".join(OPERATOR_PHASES) + " | total |")
    print("|---" * (len(OPERATOR_PHASES) + 2) + "|")
    for row in rows:
        if "error" in row:
            print(f"| {row['label']} | failed: {row['error']} |" + " |" * len(OPERATOR_PHASES))
            continue
        counts = [row[phase] for phase in OPERATOR_PHASES]
        print(f"| {row['label']} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |")


def describe(args, with_device=True):
    """Device (``with_device``: CUDA's name initialises CUDA, which the preset's parent process does not), versions."""
    device = "cuda" if args.device == "cuda" else (platform.processor() or "cpu")
    if with_device and args.device == "cuda":
        device = torch.cuda.get_device_name()
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    settings = "".join(f", {key}={value}" for key, value in getattr(args, "settings", {}).items())
    return f"{device}, torch {torch.__version__}, triton {triton_version}{settings}"


def grouped(best, plan):
    """``[{group, w0, on, ...}]``: one row per attention x TF32 setting (SPRINT variants by their label)."""
    groups = {}
    for label, group, sprint, _, _ in plan:
        if label in best:
            groups.setdefault(group, {"group": group})[sprint] = best[label]
    return list(groups.values())


def round_overheads(per_round, plan):
    """``{label: (median, smallest, largest)}``: each SPRINT variant's overhead in % over its group's w0, one value
    per round (the variant's round against w0's round of the same pass, minutes apart at most)."""
    spreads = {}
    for label, group, sprint, _, _ in plan:
        w0 = w0_label(group)
        if sprint == "w0" or label not in per_round or w0 not in per_round:
            continue
        paired = [100 * (ms / base - 1) for ms, base in zip(per_round[label], per_round[w0])]
        if paired:
            spreads[label] = (statistics.median(paired), min(paired), max(paired))
    return spreads


def print_timing(args, best, plan, per_round=None):
    print()
    print(f"# {args.model}, {args.dataset}, full_sequence, {args.n_layers} layers x {args.hidden_size} "
          f"(heads {args.n_heads}), len {args.max_len}, batch {args.batch_size}, loss {args.loss_type}, "
          f"{args.device} ({describe(args)}), {args.threads} thread(s); fastest of {args.rounds} alternating rounds "
          f"of {args.steps} steps")
    print("| variant | ms/step |")
    print("|---|---|")
    for label, *_ in plan:
        print(f"| {label} | {best[label]:.2f} |" if label in best else f"| {label} | failed |")
    for row in grouped(best, plan):
        prefix = f"{row['group']} " if row["group"] else ""
        for sprint, value in row.items():
            if sprint.startswith("on") and "w0" in row:
                print(f"| {prefix}{sprint} - w0 | {value - row['w0']:+.2f} ({100 * (value / row['w0'] - 1):+.1f}%) |")
    spreads = round_overheads(per_round or {}, plan)
    if spreads:
        print()
        print(f"| overhead over w0, paired by round ({args.rounds} rounds) | median | smallest | largest |")
        print("|---|---|---|---|")
        for label, (median, low, high) in spreads.items():
            print(f"| {label} | {median:+.1f}% | {low:+.1f}% | {high:+.1f}% |")


# -- the kernel check --------------------------------------------------------------------------------------
def dense_formula(q, k, v, lengths, keep=None, dropout_p=0.0, column_sums=True):
    """The dense path's attention (masked softmax, dropout, P V) and SPRINT's column sums, materialised."""
    from recbole_sprint.model.sprint import attention_column_sums

    n = q.size(2)
    positions = torch.arange(n, device=q.device)
    allowed = (positions[None, :] <= positions[:, None])[None, None] & (positions < lengths[:, None])[:, None, None, :]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1, dtype=torch.float32).to(q.dtype)
    if keep is not None:
        probs = probs * keep / (1 - dropout_p)
    elif dropout_p > 0:
        probs = torch.nn.functional.dropout(probs, dropout_p)
    if not column_sums:
        return probs @ v, None
    return probs @ v, attention_column_sums(probs, positions[None, :] < lengths[:, None])


def check_kernels(args):
    from recbole_sprint.model.fused_attention import fused_attention, triton_dropout_keep_mask

    rows = []
    device = args.device  # cpu: tiny shapes, for a run of this code under TRITON_INTERPRET=1; no op timings
    shapes = [(8, 4, 200, 64), (16, 4, 50, 64), (8, 8, 200, 32), (2, 8, 1024, 64)] if device == "cuda" else [
        (2, 2, 40, 16)]
    precisions = [("float32", torch.float32, False, 1e-4), ("tf32", torch.float32, True, 1e-2),
                  ("bfloat16", torch.bfloat16, False, 5e-2)]
    generator = torch.Generator(device=device).manual_seed(0)
    for batch, heads, n, head_size in shapes:
        for name, dtype, tf32, tolerance in precisions:
            for dropout_p, keep_mask in ((0.0, "recompute"), (0.2, "recompute"), (0.2, "stored")):
                case = f"B{batch} H{heads} n{n} d{head_size} {name} p{dropout_p}" + (
                    " keep stored" if keep_mask == "stored" else "")
                try:
                    set_tf32(tf32)
                    lengths = torch.randint(1, n + 1, (batch,), device=device, generator=generator)
                    lengths[0] = n
                    q, k, v = (torch.randn(batch, n, heads, head_size, device=device, generator=generator)
                               .to(dtype).transpose(1, 2).requires_grad_() for _ in range(3))
                    d_out = torch.randn(batch, heads, n, head_size, device=device, generator=generator).to(dtype)
                    d_sums = torch.randn(batch, heads, n, device=device, generator=generator)
                    keep = triton_dropout_keep_mask(batch, heads, n, dropout_p, 777, device) if dropout_p else None
                    out, sums = fused_attention(q, k, v, lengths, dropout_p=dropout_p, need_column_sums=True,
                                                backend="triton", seed=777, keep_mask=keep_mask)
                    got = [out, sums, *torch.autograd.grad((out.float() * d_out).sum() + (sums * d_sums).sum(),
                                                           (q, k, v))]
                    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
                    want_out, want_sums = dense_formula(*exact, lengths, keep=None if keep is None else keep.double(),
                                                        dropout_p=dropout_p)
                    want = [want_out, want_sums, *torch.autograd.grad(
                        (want_out * d_out.double()).sum() + (want_sums * d_sums.double()).sum(), exact)]
                    errors = [float((a.double() - b).abs().max() / b.abs().max().clamp_min(1)) for a, b in
                              zip(got, want)]
                    status = "ok" if max(errors) < tolerance and all(map(math.isfinite, errors)) else "FAIL"
                    rows.append({"case": case, "errors": errors, "status": status, "tolerance": tolerance})
                except Exception as error:
                    rows.append({"case": case, "errors": None, "status": first_line(error)})
                print(f"  check {case}: {rows[-1]['status']}", flush=True)
    return rows + (time_attention_ops() if device == "cuda" else [])


def time_attention_ops(repeats=20):
    """Forward + backward of the attention alone (ms): the dense path (matmul, masked softmax, dropout 0.2, matmul,
    + column sums for SPRINT) vs fused, without and with column sums."""
    from recbole_sprint.model.fused_attention import fused_attention

    rows = []
    for batch, heads, n, head_size in [(128, 4, 200, 64), (512, 4, 50, 64), (64, 8, 1024, 64)]:
        for name, dtype, tf32 in [("tf32", torch.float32, True), ("bfloat16", torch.bfloat16, False)]:
            lengths = torch.randint(n // 4, n + 1, (batch,), device="cuda")
            q, k, v = (torch.randn(batch, n, heads, head_size, device="cuda").to(dtype).transpose(1, 2)
                       .requires_grad_() for _ in range(3))
            valid = torch.arange(n, device="cuda")[None, :] < lengths[:, None]
            for impl in ("dense", "fused"):
                for sums in (False, True):
                    label = f"op B{batch} H{heads} n{n} d{head_size} {name} {impl} {'+ column sums' if sums else ''}"
                    try:
                        set_tf32(tf32)

                        def step():
                            q.grad = k.grad = v.grad = None
                            if impl == "dense":
                                out, column_sums = dense_formula(q, k, v, lengths, dropout_p=0.2, column_sums=sums)
                            else:
                                out, column_sums = fused_attention(q, k, v, lengths, dropout_p=0.2,
                                                                   need_column_sums=sums)
                            loss = out.float().sum()
                            if sums:
                                loss = loss + column_sums.float()[valid[:, None, :].expand_as(column_sums)].sum()
                            loss.backward()

                        for _ in range(3):
                            step()
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        start = time.perf_counter()
                        for _ in range(repeats):
                            step()
                        torch.cuda.synchronize()
                        rows.append({"case": label, "ms": (time.perf_counter() - start) / repeats * 1e3,
                                     "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "status": "ok"})
                    except Exception as error:
                        rows.append({"case": label, "status": first_line(error)})
                    q.grad = k.grad = v.grad = None
                    gc.collect()
                    torch.cuda.empty_cache()
                    print(f"  {label}: {rows[-1].get('ms', rows[-1]['status'])}", flush=True)
    return rows


def print_check(rows):
    print()
    print("| kernel check (Triton vs dense float64; error / max(1, max value)) | out | column sums | dq | dk | dv | "
          "tolerance | status |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "tolerance" in row or row.get("errors", 0) is None:
            errors = row.get("errors") or [float("nan")] * 5
            print(f"| {row['case']} | " + " | ".join(f"{e:.1e}" for e in errors)
                  + f" | {row.get('tolerance', float('nan')):.0e} | {row['status']} |")
    print()
    print("| attention alone, forward + backward (dropout 0.2) | ms | peak GiB | status |")
    print("|---|---|---|---|")
    for row in rows:
        if row["case"].startswith("op "):
            print(f"| {row['case'][3:]} | {row.get('ms', float('nan')):.3f} | {row.get('peak_gib', float('nan')):.2f} "
                  f"| {row['status']} |")


# -- the issue-25 preset -----------------------------------------------------------------------------------
def run_child(extra, timeout):
    """This script with ``extra`` options in a subprocess; its JSON rows (``None`` if it crashed) and its output."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rows.json")
        command = [sys.executable, os.path.abspath(__file__), *extra, "--json", path]
        print("$", " ".join(command[1:]), flush=True)
        try:
            result = subprocess.run(command, timeout=timeout, text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            output, code = result.stdout, result.returncode
        except subprocess.TimeoutExpired as error:
            output = error.stdout or ""
            output, code = output.decode() if isinstance(output, bytes) else output, "timeout"
        print(output, flush=True)
        if not os.path.exists(path):
            return None, f"exit {code}: " + (output.strip().splitlines() or [""])[-1][:300]
        with open(path) as handle:  # written before an optional --profile: a profile cut short keeps the rows
            rows = json.load(handle)
        return rows, None if code == 0 else f"exit {code} after its rows were written"


PRESET_PARTS = ("check", "ml-1m-3k", "beauty-2", "beauty-6", "memory", "compile")
COMPILE_SETTINGS = (0, 1, 2)  # ``compile``: every ISSUE25_SETTINGS setting, TF32 on
# ``compile``: the sprint_compile modes timed (``--compile`` overrides); on an H100 inductor_cuda_graph was the faster
# of the two (thirty-second session)
COMPILE_PART_MODES = "cuda_graph,inductor_cuda_graph"


def compile_part_columns(modes):
    """``[(variant label, column title)]`` of the compile part's extra columns: each sprint_compile mode (the default
    ``sprint_power_impl: auto``, Triton's power iteration on CUDA), each with the batched power iteration
    (``sprint_power_impl: torch``), each graph mode in graphs of its own (``sprint_in_backbone_graph: False``), every
    4, each mode with every 4."""
    titles = {"default": "SPRINT compiled", "cuda_graph": "SPRINT CUDA graphs",
              "inductor_cuda_graph": "SPRINT Inductor + CUDA graphs"}
    modes = [mode for mode in modes.split(",") if mode]
    return ([(f"on, compile {mode}", titles.get(mode, f"SPRINT {mode}")) for mode in modes]
            + [(f"on, compile {mode}, power torch", titles.get(mode, f"SPRINT {mode}") + ", batched power iteration")
               for mode in modes]
            + [(f"on, compile {mode}, own graphs", titles[mode] + ", own graphs") for mode in modes
               if mode in SPRINT_GRAPH_MODES]
            + [("on, every 4", "SPRINT every 4")]
            + [(f"on, compile {mode}, every 4", titles.get(mode, f"SPRINT {mode}") + " + every 4") for mode in modes])


BATCHED = {"sprint_power_impl": "torch"}  # the rows that do not name the Triton power iteration (auto's choice on CUDA)
GRAPH_CHECK_VARIANTS = {  # --check_graphs: each against the eager run (batched power iterations, as its rows)
    "sprint_compile": {"sprint_compile": "cuda_graph", **BATCHED},
    "backbone_compile": {"backbone_compile": "cuda_graph", **BATCHED},
    "both": {"sprint_compile": "cuda_graph", "backbone_compile": "cuda_graph", **BATCHED},
    "sprint_compile inductor": {"sprint_compile": "inductor_cuda_graph", **BATCHED},
    "both, inductor": {"sprint_compile": "inductor_cuda_graph", "backbone_compile": "cuda_graph", **BATCHED},
    # sprint_power_impl: triton's kernels, eagerly (against the batched operators) and recorded
    "power triton": {"sprint_power_impl": "triton"},
    "sprint_compile, power triton": {"sprint_compile": "cuda_graph", "sprint_power_impl": "triton"},
    "both, power triton": {"sprint_compile": "cuda_graph", "backbone_compile": "cuda_graph",
                           "sprint_power_impl": "triton"},
    "both, inductor, power triton": {"sprint_compile": "inductor_cuda_graph", "backbone_compile": "cuda_graph",
                                     "sprint_power_impl": "triton"},
    # with both, SPRINT's terms are recorded in the backbone's graphs; sprint_in_backbone_graph: False, in their own
    "both, own graphs": {"sprint_compile": "cuda_graph", "backbone_compile": "cuda_graph",
                         "sprint_in_backbone_graph": False, **BATCHED},
    "both, inductor, own graphs": {"sprint_compile": "inductor_cuda_graph", "backbone_compile": "cuda_graph",
                                   "sprint_in_backbone_graph": False, **BATCHED},
}


def check_graphs(args):
    """CUDA graphs against eager on CUDA: the model (SASRecPPSPRINT unless ``--model``) trained two epochs of ml-100k
    eagerly and with each of :data:`GRAPH_CHECK_VARIANTS` (SPRINT's terms, the backbone, both as CUDA graphs; SPRINT's
    terms compiled by Inductor and recorded, alone and with the backbone's graphs; the power iterations' Triton
    kernels, eagerly and recorded; 2 x 64,
    length 50, batch 128 users: 8 steps an epoch, the last one smaller, so two input shapes are recorded; the loss
    ``--loss_type``, CE unless given), dropout 0, TF32 off, from one initialisation, for each attention of
    ``--attention_impl`` (default dense,fused). Rows: the epochs' losses and the largest difference of a weight or
    buffer at the end, relative to its scale (the graphed backbone's gradients reach the parameters summed in another
    order than eagerly: rounding, not 0)."""
    rows = []
    default_impls = "dense,fused" if args.model.startswith("SASRecPP") else "model's own"
    for impl in [s for s in (args.attention_impl or default_impls).split(",") if s]:
        small = argparse.Namespace(**{**vars(args), "dataset": "ml-100k", "n_layers": 2, "hidden_size": 64,
                                       "inner_size": 256, "n_heads": 2, "max_len": 50, "batch_size": 128,
                                       "full_batch_size": 128})
        runs = {}
        for variant, settings in {"eager": BATCHED, **checked_variants(args)}.items():
            overrides = {**settings, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, "tf32": False}
            if args.model.startswith("SASRecPP"):
                overrides["attention_impl"] = model_attention(impl)
            try:
                model, trainer, train_data = build_variant(small, variant, overrides, variant_settings(False, impl))
                train_data.generator.manual_seed(small.seed)  # the cached loader's shuffle, from its start again
                losses = [trainer._train_epoch(train_data, epoch) for epoch in range(2)]
                speed.synchronize(args.device)
                state = {key: value.detach().double().clone() for key, value in model.state_dict().items()
                         if value.is_floating_point()}
                backbone = getattr(model, "_backbone_graphs", None)
                graphs = len(model.sprint._graphs) + (len(backbone.graphs) if backbone is not None else 0)
                runs[variant] = (losses, state, graphs)
            except Exception as error:
                traceback.print_exc()  # the row keeps the first line; the log, where it came from
                runs[variant] = first_line(error)
        for variant in checked_variants(args):
            row = {"attention": impl, "variant": variant}
            failed = {mode: run for mode, run in runs.items() if mode in ("eager", variant) and isinstance(run, str)}
            if failed:
                row["error"] = "; ".join(f"{mode}: {run}" for mode, run in failed.items())
            else:
                (eager_losses, eager_state, _), (graph_losses, graph_state, graphs) = runs["eager"], runs[variant]
                row["losses"] = [eager_losses, graph_losses]
                row["graphs"] = graphs
                row["max_rel_diff"] = max(((eager_state[k] - graph_state[k]).abs().max()
                                           / eager_state[k].abs().max().clamp_min(1e-12)).item() for k in eager_state)
            if draws_differ(args.loss_type, variant):
                row["other_draws"] = True  # see print_graph_check
            print(f"  graph check {row}", flush=True)
            rows.append(row)
    return rows


def checked_variants(args):
    """The :data:`GRAPH_CHECK_VARIANTS` that ``--check_variants`` names (all when it is empty), in its order; an unknown
    name exits with the allowed ones."""
    names = [name.strip() for name in args.check_variants.split(";") if name.strip()] or list(GRAPH_CHECK_VARIANTS)
    unknown = [name for name in names if name not in GRAPH_CHECK_VARIANTS]
    if unknown:
        raise SystemExit(f"--check_variants: unknown {unknown}; allowed: {'; '.join(GRAPH_CHECK_VARIANTS)}")
    return {name: GRAPH_CHECK_VARIANTS[name] for name in names}


def draws_differ(loss_type, variant):
    """Whether ``--check_graphs``' ``variant`` trains on other random draws than eager: a loss that samples negatives
    (BCE, sampled softmax) inside the backbone's recorded graph, whose recording drew random numbers first (dropout is
    0 in the check, so nothing else draws)."""
    return loss_type != "CE" and GRAPH_CHECK_VARIANTS[variant].get("backbone_compile") == "cuda_graph"


def print_graph_check(rows):
    print()
    print("| CUDA graphs vs eager (2 epochs of ml-100k, float32) | graphed | epoch losses, eager | with graphs "
          "| recorded graphs | largest relative difference of a weight |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        variant = row["variant"]
        if "error" in row:
            print(f"| {row['attention']} | {variant} | failed: {row['error']} | | | |")
            continue
        eager, graphed = (", ".join(f"{loss:.6f}" for loss in losses) for losses in row["losses"])
        mark = " (other draws)" if row.get("other_draws") else ""
        print(f"| {row['attention']} | {variant}{mark} | {eager} | {graphed} | {row['graphs']} "
              f"| {row['max_rel_diff']:.2e} |")
    if any(row.get("other_draws") for row in rows):
        print("(other draws): the loss draws its negatives inside the backbone's recorded graph, whose recording drew "
              "random numbers first, so the graphed run trains on other negatives than the eager one: these rows "
              "compare two draws, not rounding (a check of the graphs' arithmetic is the same command with "
              "--loss_type CE)")


RESOURCE_VARIANTS = [  # (column-sum gradient, dropout, keep mask stored): as SPRINT's training step launches them
    (False, False, False), (True, False, False), (False, True, False), (True, True, False), (False, True, True),
    (True, True, True)]


def kernel_resources(configs, names=None, variants=None):
    """``--kernel_resources``: each fused kernel (``names``, default all) compiled ahead for sm_90 at each ``(block,
    warps)`` of ``configs`` and each of ``variants`` (default :data:`RESOURCE_VARIANTS`; the forward and column-sum
    kernels have no gradient flag), read back with the ``cuobjdump`` Triton ships: registers per thread (at most
    255, and 65536 / (32 x warps)), stack bytes, local-memory loads and stores in the SASS (register spills), and
    the SASS instructions in all, integer ones (:data:`INTEGER_SASS`: index arithmetic, comparisons and the
    dropout's Philox rounds) and tensor-core ones (``HMMA``; ``HGMMA``, Hopper's warp-group form, at wide tiles).
    Static facts of the compiled code (each instruction
    counted once, loops not unrolled by the count): where a kernel spills and what its code is made of, not how
    fast it runs."""
    import triton

    from recbole_sprint.model import fused_attention

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    rows = []
    for block, warps in configs:
        for name in names or fused_attention.KERNEL_NAMES:
            for has_g, dropout, stored in variants or RESOURCE_VARIANTS:
                if has_g and "HAS_G" not in getattr(fused_attention, name).arg_names:
                    continue
                compiled = fused_attention.compile_ahead(name, block=block, warps=warps, dropout=dropout,
                                                         stored=stored, has_g=has_g)
                with tempfile.TemporaryDirectory() as folder:
                    path = os.path.join(folder, "kernel.cubin")
                    with open(path, "wb") as handle:
                        handle.write(compiled.asm["cubin"])
                    usage = subprocess.run([cuobjdump, "--dump-resource-usage", path], capture_output=True,
                                           text=True, check=True).stdout
                    sass = subprocess.run([cuobjdump, "-sass", path], capture_output=True, text=True,
                                          check=True).stdout
                registers, stack = (int(v) for v in re.search(r"REG:(\d+) STACK:(\d+)", usage).groups())
                opcodes = sass_opcodes(sass)
                rows.append({"kernel": name, "block": block, "warps": warps, "column_sum_grad": has_g,
                             "dropout": dropout, "stored": stored, "registers": registers, "stack_bytes": stack,
                             "local_ops": len(re.findall(r"\b(?:LDL|STL)\b", sass)), "instructions": len(opcodes),
                             "integer": sum(op in INTEGER_SASS for op in opcodes),
                             "tensor_core": sum(op.startswith(("HMMA", "HGMMA")) for op in opcodes)})
    return rows


INTEGER_SASS = ("IMAD", "IADD3", "IMUL", "LOP3", "SHF", "LEA", "ISETP", "IABS", "SEL", "PRMT", "IMNMX")


def sass_opcodes(sass):
    """The opcode of every instruction of ``cuobjdump -sass`` output (``IMAD`` of ``@P0 IMAD.WIDE.U32 R2, ...``)."""
    return re.findall(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P[T\d]\s+)?([A-Z][A-Z0-9_]*)", sass)


def print_kernel_resources(rows):
    print("| kernel | block x warps | column-sum gradient | dropout | keep mask | registers | stack bytes "
          "| local loads + stores | SASS instructions | integer | tensor-core |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        mask = ("stored" if row["stored"] else "recomputed") if row["dropout"] else ""
        print(f"| {row['kernel']} | {row['block']} x {row['warps']} | {'yes' if row['column_sum_grad'] else ''} "
              f"| {'yes' if row['dropout'] else ''} | {mask} | {row['registers']} | {row['stack_bytes']} "
              f"| {row['local_ops']} | {row['instructions']} | {row['integer']} | {row['tensor_core']} |")


def gradient_of_sum(run, weight, start):
    """One forward + backward pass: the gradient of ``run(weight, start).sum()`` with respect to ``weight``."""
    return torch.autograd.grad(run(weight, start).sum(), weight)


def fastest_ms(runs, device, rounds, steps):
    """``{name: ms}``: per zero-argument callable of ``runs``, the fastest of ``rounds`` rounds of ``steps`` calls, the
    callables alternating within each round (:func:`rotated`: the first swaps every round)."""
    best = {name: math.inf for name in runs}
    for index in range(rounds):
        for name in rotated(list(runs), index):
            speed.synchronize(device)
            begin = time.perf_counter()
            for _ in range(steps):
                runs[name]()
            speed.synchronize(device)
            best[name] = min(best[name], (time.perf_counter() - begin) / steps * 1000)
    return best


def time_power_iteration(shapes, device, rounds, steps, tiles=()):
    """``--power_iteration``: per ``(G, M, N)`` of ``shapes``, the fastest of ``rounds`` rounds of ``steps`` forward +
    backward passes of one power-iteration step of ``sigma.sum()``, with :func:`power_iteration` and with
    :func:`power_iteration_reference`, alternating within each round (:func:`rotated`: the first swaps every round);
    the largest difference of their weight gradients relative to the largest gradient entry; and the operators each
    dispatches in the forward and in the backward (views left out; on CUDA each is a kernel launch)."""
    from recbole_sprint.model.sprint import power_iteration, power_iteration_reference

    implementations = {"own backward": lambda w, v: power_iteration(w, v, 1)[0],
                       "autograd": lambda w, v: power_iteration_reference(w, v, 1)[0]}
    generator = torch.Generator().manual_seed(0)
    rows = []
    for shape in shapes:
        weight = torch.randn(*shape, generator=generator).to(device).requires_grad_()
        start = torch.nn.functional.normalize(torch.randn(shape[0], shape[2], generator=generator), dim=-1).to(device)
        passes = {name: functools.partial(gradient_of_sum, run, weight, start) for name, run in implementations.items()}
        grads = {name: one_pass()[0] for name, one_pass in passes.items()}  # also the warm-up
        best = fastest_ms(passes, device, rounds, steps)
        difference = (grads["own backward"] - grads["autograd"]).abs().max() / grads["autograd"].abs().max()
        operators = {}
        for name, run in implementations.items():
            sigma, forward = operators_dispatched(functools.partial(run, weight, start))
            _, backward = operators_dispatched(functools.partial(torch.autograd.grad, sigma, weight,
                                                                 torch.ones_like(sigma)))
            operators[name] = (sum(forward.values()), sum(backward.values()))
        rows.append({"shape": "x".join(map(str, shape)), "own_ms": best["own backward"], "autograd_ms": best["autograd"],
                     "grad_difference": float(difference), "own_operators": operators["own backward"],
                     "autograd_operators": operators["autograd"]})
        del weight, start, grads
    rows.append(time_all_shapes(shapes, device, rounds, steps, tiles))
    return rows


def time_all_shapes(shapes, device, rounds, steps, tiles=()):
    """The row ``all`` of ``--power_iteration``: one step for every matrix of ``shapes`` at once, as the regulariser
    runs it: ``batched`` (``sprint_power_impl: torch``: per shape, the weights stacked, then one chain of operators)
    against ``fused`` (``triton``: :func:`fused_power_iteration`'s kernels, the weights read in place), when the fused
    kernels can run on ``device``; the gradients' largest difference, and the operators / Triton launches each
    dispatches."""
    from recbole_sprint.model.fused_power_iteration import (fused_power_iteration, interpreting, triton_launches,
                                                            unusable_reason)
    from recbole_sprint.model.sprint import power_iteration

    generator = torch.Generator().manual_seed(1)
    weights, starts, matrices = [], [], []
    for shape in shapes:
        name = "x".join(map(str, shape))
        for _ in range(shape[0]):
            matrices.append((name, len(weights), 0, shape[1]))
            weights.append(torch.randn(*shape[1:], generator=generator).to(device).requires_grad_())
        starts.append(torch.nn.functional.normalize(torch.randn(shape[0], shape[2], generator=generator), dim=-1)
                      .to(device))
    matrices = tuple(matrices)

    def batched():
        stacked, first = [], 0
        for shape in shapes:
            stacked.append(torch.stack(weights[first:first + shape[0]]))
            first += shape[0]
        return sum(power_iteration(w, start, 1)[0].sum() for w, start in zip(stacked, starts))

    def fused():
        return sum(sigma.sum() for sigma in fused_power_iteration(matrices, weights, starts, 1)[0].values())

    row = {"shape": "all", "matrices": len(weights)}
    reason = unusable_reason(matrices, weights)
    implementations = {"batched": batched} if reason else {"batched": batched, "fused": fused}
    if reason:
        row["fused_error"] = reason
    grads = {name: torch.autograd.grad(run(), weights) for name, run in implementations.items()}  # the warm-up too
    best = fastest_ms({name: functools.partial(lambda run: torch.autograd.grad(run(), weights), run)
                       for name, run in implementations.items()}, device, rounds, steps)
    if device == "cuda":  # recorded as one CUDA graph (forward + backward), as SPRINT's graph modes run them
        graphed = dict(implementations)
        graphed["batched, Inductor"] = torch.compile(batched, fullgraph=True, dynamic=False)
        replays = {}
        for name, run in graphed.items():
            try:
                replays[name] = recorded_gradient(run, weights).replay
            except Exception as error:  # noqa: BLE001 - a row that cannot record says why
                row[f"{name}_graph_error"] = first_line(error)
        for name, ms in fastest_ms(replays, device, rounds, steps).items():
            row[f"{name}_graph_ms"] = ms
        if "fused" in implementations and tiles:
            try:
                row["tiles"] = fused_tiles_in_graphs(tiles, fused, weights, device, rounds, steps)
            except Exception as error:  # noqa: BLE001 - the rows above still print
                row["tiles_error"] = first_line(error)
    for name, run in implementations.items():
        total, forward = operators_dispatched(run)
        _, backward = operators_dispatched(functools.partial(torch.autograd.grad, total, weights))
        row[f"{name}_ms"] = best[name]
        row[f"{name}_operators"] = (sum(forward.values()), sum(backward.values()))
    if "fused" in grads and interpreting():  # the interpreter's own tensor operators would be counted
        row["fused_operators"] = None
    if "fused" in grads:
        row["grad_difference"] = max(float((a - b).abs().max() / a.abs().max())
                                     for a, b in zip(grads["batched"], grads["fused"]))
        row["fused_launches"] = triton_launches(1)
    return row


def fused_tiles_in_graphs(tiles, fused, weights, device, rounds, steps):
    """``{"ROWSxCOLUMNS": ms}``: the fused kernels' graph replay (forward + backward) per tile shape of ``tiles``
    (``RECBOLE_SPRINT_PI_ROWS`` x ``RECBOLE_SPRINT_PI_COLUMNS``, set for the recording and put back after), timed in
    alternating rounds."""
    replays = {}
    for rows, columns in tiles:
        shape = {"RECBOLE_SPRINT_PI_ROWS": str(rows), "RECBOLE_SPRINT_PI_COLUMNS": str(columns)}
        with unittest.mock.patch.dict(os.environ, shape):
            replays[f"{rows}x{columns}"] = recorded_gradient(fused, weights).replay
    return fastest_ms(replays, device, rounds, steps)


def recorded_gradient(run, weights):
    """A CUDA graph of ``torch.autograd.grad(run(), weights)``, recorded after three warm-up runs on a side stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            torch.autograd.grad(run(), weights)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        torch.autograd.grad(run(), weights)
    return graph


def print_power_iteration(rows, device):
    print(f"| one power-iteration step, forward + backward ({device}, float32) | autograd ms | own backward ms "
          "| own / autograd | largest gradient difference (relative) | operators, forward + backward: autograd "
          "| own backward |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if row["shape"] == "all":
            continue
        print(f"| {row['shape']} | {row['autograd_ms']:.3f} | {row['own_ms']:.3f} | "
              f"{row['own_ms'] / row['autograd_ms']:.2f} | {row['grad_difference']:.1e} | "
              f"{' + '.join(map(str, row['autograd_operators']))} | {' + '.join(map(str, row['own_operators']))} |")
    row = rows[-1]
    print()
    print(f"| every shape at once ({row['matrices']} matrices, one step, {device}, float32) | ms, forward + backward "
          "| operators, forward + backward (views left out) | Triton launches, forward + backward |")
    print("|---|---|---|---|")
    print(f"| batched (sprint_power_impl: torch) | {row['batched_ms']:.3f} | "
          f"{' + '.join(map(str, row['batched_operators']))} | 0 |")
    if "fused_error" in row:
        print(f"| fused (sprint_power_impl: triton) | cannot run: {row['fused_error']} | | |")
    else:
        operators = ("not counted under the interpreter" if row["fused_operators"] is None
                     else " + ".join(map(str, row["fused_operators"])))
        print(f"| fused (sprint_power_impl: triton) | {row['fused_ms']:.3f} | {operators} | "
              f"{' + '.join(map(str, row['fused_launches']))} |")
        print(f"\nlargest gradient difference, fused against batched (relative): {row['grad_difference']:.1e}")
    graphed = [name for name in ("batched", "batched, Inductor", "fused") if f"{name}_graph_ms" in row
               or f"{name}_graph_error" in row]
    if graphed:
        print(f"\n| every shape at once, forward + backward recorded as one CUDA graph ({device}) | ms a replay |")
        print("|---|---|")
        for name in graphed:
            value = row.get(f"{name}_graph_ms")
            print(f"| {name} | {f'{value:.4f}' if value is not None else 'failed: ' + row[f'{name}_graph_error']} |")
        for tile, value in row.get("tiles", {}).items():
            print(f"| fused, tiles of ROWSxCOLUMNS {tile} | {value:.4f} |")
        if "tiles_error" in row:
            print(f"| fused, other tiles | failed: {row['tiles_error']} |")


def preset_issue25(args):
    """Each part in subprocesses (see the module docstring); one table at the end. A setting runs dense and fused in
    one process (one data preparation, alternating rounds); if that process dies (a crashed kernel takes the CUDA
    context with it), dense and fused are run again apart."""
    args.device = "cuda"
    parts = [part for part in args.parts.split(",") if part]
    unknown = sorted(set(parts) - set(PRESET_PARTS))
    if unknown:
        raise SystemExit(f"--parts: unknown {unknown}; allowed: {', '.join(PRESET_PARTS)}")
    common = ["--device", "cuda", "--model", "SASRecPPSPRINT", "--rounds", str(args.rounds), "--steps",
              str(args.steps), "--data_path", args.data_path, *[x for item in args.set_items for x in ("--set", item)]]
    if args.attn_dropout_prob is not None:  # every timed setting (the kernel check has its own dropout cases)
        common += ["--attn_dropout_prob", str(args.attn_dropout_prob)]
    check, check_error = run_child(["--check", "--device", "cuda"], args.timeout) if "check" in parts else (None, None)
    timing = []
    for part, (setting, options) in zip(PRESET_PARTS[1:4], ISSUE25_SETTINGS):
        if part not in parts:
            continue
        rows, error = run_child(common + options + ["--attention_impl", "dense,fused", "--tf32", "off,on"],
                                args.timeout)
        if rows is not None:
            timing += [{"setting": setting, **row} for row in rows["groups"]]
            continue
        print(f"# {setting}: dense and fused together failed ({error}); again one attention at a time", flush=True)
        for impl in ("dense", "fused"):
            rows, error = run_child(common + options + ["--attention_impl", impl, "--tf32", "off,on"], args.timeout)
            if rows is None:
                timing.append({"setting": setting, "group": f"{impl} (all)", "error": error})
            else:
                timing += [{"setting": setting, **row} for row in rows["groups"]]
    graph_check = None
    compile_modes = args.compile or COMPILE_PART_MODES
    columns = compile_part_columns(compile_modes) if "compile" in parts else []
    if "compile" in parts:  # SPRINT's terms compiled (torch.compile, CUDA graphs) beside eager, TF32 on
        graph_check, graph_error = run_child(["--check_graphs", "--device", "cuda", "--model", "SASRecPPSPRINT",
                                              "--data_path", args.data_path], args.timeout)
        failed = [{"attention": "all", "variant": "all", "error": graph_error}]
        graph_check = graph_check["graph_check"] if graph_check else failed
        for index in COMPILE_SETTINGS:
            setting, options = ISSUE25_SETTINGS[index]
            profile = ["--profile", str(args.profile)] if args.profile else []
            rows, error = run_child(common + options + ["--attention_impl", args.attention_impl or "dense,fused",
                                                        "--tf32", "on", "--compile", compile_modes, "--own_graphs",
                                                        "--power_impl", "torch", "--every", "4", *profile],
                                    args.timeout)
            if rows is None:
                timing.append({"setting": setting, "group": "compile (all)", "error": error})
            else:
                timing += [{"setting": setting, "compile_part": True, **row} for row in rows["groups"]]
    memory = []
    if "memory" in parts:
        for impl in ("dense", "fused"):
            rows, error = run_child(common[:4] + ["--data_path", args.data_path, "--memory", "--attention_impl", impl]
                                    + ISSUE25_MEMORY, args.timeout)
            memory += rows["memory"] if rows is not None else [{"label": f"{impl} (all)", "status": error}]

    print()
    print(f"# issue 25: SASRecPPSPRINT, ms/step = fastest of {args.rounds} alternating rounds of {args.steps} steps "
          f"(the variants of one setting alternate in one process); {describe(args, False)}; parts {','.join(parts)}")
    if "check" in parts:
        if check is None:
            print(f"# kernel check: crashed ({check_error})")
        else:
            print_check(check["check"])
    if graph_check:
        print_graph_check(graph_check)
    if timing:
        print()
        extra_titles = "".join(f" | {title} ms/step | overhead" for _, title in columns)
        print("| setting | attention, TF32 | w0 ms/step | SPRINT ms/step | SPRINT overhead | w0 vs dense "
              f"| SPRINT vs dense{extra_titles} |")
        print("|---" * (7 + 2 * len(columns)) + "|")
    for row in timing:
        if "error" in row:
            print(f"| {row['setting']} | {row['group']} | failed: {row['error']} |" + " |" * (4 + 2 * len(columns)))
            continue
        dense = next((r for r in timing if r.get("setting") == row["setting"] and "error" not in r
                      and r.get("compile_part") == row.get("compile_part")
                      and r["group"] == row["group"].replace("fused", "dense")), None)
        w0 = row.get("w0")

        def ratio(key):
            if dense is None or key not in row or key not in dense or row["group"].startswith("dense"):
                return ""
            return f"{dense[key] / row[key]:.2f}x"

        def timed(key):
            """``[ms/step, overhead over w0]`` of the variant ``key`` of this row."""
            value = row.get(key)
            return [f"{value:.2f}", f"{100 * (value / w0 - 1):+.1f}%"] if value and w0 else ["failed", ""]

        extra = ([cell for key, _ in columns for cell in timed(key)] if row.get("compile_part")
                 else [""] * 2 * len(columns))
        cells = [row["setting"] + (" (compile run)" if row.get("compile_part") else ""), row["group"],
                 "n/a" if w0 is None else f"{w0:.2f}", *timed("on"), ratio("w0"), ratio("on"), *extra]
        print("| " + " | ".join(cells) + " |")
    if memory:
        print()
        print("| memory check: ml-1m-3k, 8 x 512 (8 heads), len 1024, batch 64, CE, TF32 | ms/step | peak GiB "
              "| status |")
        print("|---|---|---|---|")
    for row in memory:
        print(f"| {row['label']} | {row.get('ms', float('nan')):.1f} | {row.get('peak_gib', float('nan')):.1f} "
              f"| {row['status']} |")


def parse_dimensions(option, value, form, example):
    """``"AxB,CxD"`` -> ``[(A, B), (C, D)]``, each item with as many numbers as ``form`` has parts (``BLOCKxWARPS``:
    2); anything else exits with an error naming ``option``, the form and ``example``."""
    pattern = "x".join(["[0-9]+"] * len(form.split("x")))
    items = value.split(",")
    if not all(re.fullmatch(pattern, item) for item in items):
        raise SystemExit(f"{option} takes {form}[,...], e.g. {example}; got {value!r}")
    return [tuple(int(v) for v in item.split("x")) for item in items]


def main(argv=None):
    args = parse_args(argv)
    logging.disable(logging.WARNING)
    sys.argv = sys.argv[:1]  # RecBole's Config would parse our options as config keys
    torch.set_num_threads(args.threads)
    if args.preset:
        return preset_issue25(args)
    output = {}
    if args.kernel_resources:
        configs = parse_dimensions("--kernel_resources", args.kernel_resources, "BLOCKxWARPS", "64x8,32x8")
        output["kernel_resources"] = kernel_resources(configs)
        print_kernel_resources(output["kernel_resources"])
    elif args.power_iteration:
        shapes = parse_dimensions("--power_iteration", args.power_iteration, "GxMxN", "12x6144x1536,12x1536x6144")
        tiles = parse_dimensions("--pi_tiles", args.pi_tiles, "ROWSxCOLUMNS", "16x256,32x128") if args.pi_tiles else ()
        output["power_iteration"] = time_power_iteration(shapes, args.device, args.rounds, args.steps, tiles)
        print_power_iteration(output["power_iteration"], args.device)
    elif args.check:
        output["check"] = check_kernels(args)
        print_check(output["check"])
    elif args.check_graphs:
        output["graph_check"] = check_graphs(args)
        print_graph_check(output["graph_check"])
    elif args.memory:
        output["memory"] = memory_variants(args)
    elif args.count_ops:
        output["operators"] = count_operators(args)
        print_operator_counts(args, output["operators"])
    else:
        best, plan, trained, per_round = time_variants(args)
        print_timing(args, best, plan, per_round)
        output["groups"] = grouped(best, plan)
        output["round_overheads"] = round_overheads(per_round, plan)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(output, handle)
    if "groups" in output and args.profile:
        # after the times are printed and written: a profile cut short by a time limit costs only itself
        output["profile"] = profile_variants(args, trained, plan)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(output, handle)


if __name__ == "__main__":
    main()

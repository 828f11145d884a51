"""Training-speed benchmark: seconds/epoch and samples/s, prefix vs full_sequence, SPRINT off vs on.

    python benchmarks/speed.py                                  # CPU: small, estimated from a few batches
    python benchmarks/speed.py --device cuda --max_len 200      # GPU: whole epochs on ml-1m-3k
    python benchmarks/speed.py --dataset ml-100k --max_batches 0
    python benchmarks/speed.py --device cuda --big              # + the 0.34B configuration in bf16 (TFLOP/s)
    python benchmarks/speed.py --device cuda --big_only --big_models SASRecSPRINT,SASRecPPSPRINT:fused --big_w0

Every run goes through RecBole's real training path: recbole_sprint's create_dataset/data_preparation,
the model's calculate_loss and SprintTrainer._train_epoch (optimizer step included). Evaluation is not timed.

Rows (models that ``get_model`` cannot find are skipped with a note, so BERT4RecSPRINT, HSTU and HSTUSPRINT
join the table once they exist):

* a RecBole model (``SASRec``): prefix mode only;
* a plugin model with the ``FullSequence`` / ``ClozeFullSequence`` mixin: ``prefix`` and ``full_sequence``;
  otherwise ``prefix`` only;
* a SPRINT model: SPRINT weights 0 ("w0", must equal its backbone) and the yaml defaults ("on").

Columns: ``s/epoch`` (the fastest of ``--epochs`` after one warm-up batch, each epoch's time printed above the table;
estimated as seconds/batch x batches/epoch when ``--max_batches`` cuts the epoch, marked ``~``), ``samples/s``
(training rows: one per prefix in prefix mode, one per user in full_sequence mode), ``targets/s`` (next-item targets
that get a loss: one per row in prefix mode, every valid position in full_sequence mode), and SPRINT's overhead over
the same model with weights 0. A row timed while Inductor's compile workers were alive beside the process gets a
warning line (:func:`compile_workers`).

FLOPs of the --big configuration (the paper's XXL size, 12 x 1536, 24 heads, inner 4d; counted analytically per
training step):

    matmul params  P = the weights of the backbone's linear layers, counted on the model built
                       (RecBole's SASRec: L (4 d^2 + 2 d d_ff) = 339.7M, the paper's "12 L d^2";
                        SASRec++: L (4 d^2 + 3 d d_ff) = 453.0M, SwiGLU's gate, up and down)
    forward        F = 2 T P                              (T = B n computed tokens, padding included)
                     + L * 4 B n^2 d                      (Q K^T and P V over the full n x n matrix, also for the fused
                                                           kernel, which skips the masked blocks: a like-for-like count)
                     + 2 T_valid d S                      (scoring: S = |I| items for CE, 1 + N for BCE)
    training       3 F                                    (backward = 2x forward)

SPRINT's power iterations (a few matrix-vector products per step) and elementwise ops are not counted.
Achieved TFLOP/s = 3F / measured step time, and its share of the bf16 peak measured in the same run on the same
GPU (bf16 8192 x 8192 x 8192 ``torch.matmul``, the best of 10 rounds of 10; ``--peak_tflops`` overrides it).
``--big_models`` entries are model names, ``NAME:IMPL`` sets ``attention_impl`` (SASRec++: dense or fused);
``--big_w0`` also times each with its SPRINT weights 0, so SPRINT's share at this size is printed too.

CPU timings on a shared machine are noisy: compare rows of one run, not runs.
"""

import argparse
import itertools
import logging
import os
import platform
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402
import yaml  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

import recbole_sprint  # noqa: E402,F401  (compatibility shims)
from recbole_sprint.config import Config  # noqa: E402
from recbole_sprint.data import create_dataset, data_preparation  # noqa: E402
from recbole_sprint.model.full_sequence import ClozeFullSequence, FullSequence  # noqa: E402
from recbole_sprint.model.sprint import SPRINT  # noqa: E402
from recbole_sprint.utils import get_model, get_trainer  # noqa: E402

DEFAULT_MODELS = ["SASRec", "SASRecSPRINT", "BERT4RecSPRINT", "HSTU", "HSTUSPRINT"]
SPRINT_OFF = {"sprint_attn_weight": 0.0, "sprint_ffn_weight": 0.0, "sprint_emb_weight": 0.0}
BIG = {"n_layers": 12, "hidden_size": 1536, "n_heads": 24, "inner_size": 4 * 1536}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-3k")
    parser.add_argument("--data_path", default=os.path.join(REPO, "..", "shared", "datasets"),
                        help="folder with <dataset>/ atomic files (ml-100k: RecBole's bundled copy if absent)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    parser.add_argument("--modes", default="prefix,full_sequence")
    parser.add_argument("--max_len", type=int, default=50, help="MAX_ITEM_LIST_LENGTH")
    parser.add_argument("--n_layers", type=int, default=2)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--n_heads", type=int, default=2)
    parser.add_argument("--inner_size", type=int, default=None, help="default: 4 * hidden_size")
    parser.add_argument("--batch_size", type=int, default=2048,
                        help="train_batch_size in prefix mode, every row (RecBole's default 2048); halved on "
                             "CUDA out-of-memory down to 256, and the batch used is shown")
    parser.add_argument("--full_batch_size", type=int, default=128,
                        help="train_batch_size in full_sequence mode, every row (rows are users there)")
    parser.add_argument("--loss_type", default="CE", help="CE (both modes) or BCE / sampled_softmax (full_sequence)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per row (default: 2 on cuda, 1 on cpu)")
    parser.add_argument("--max_batches", type=int, default=None,
                        help="time at most this many batches per epoch and extrapolate (0 = whole epoch; "
                             "default: 4 on cpu, 0 on cuda)")
    parser.add_argument("--amp", action="store_true", help="enable_amp with amp_dtype bfloat16 for every row")
    parser.add_argument("--big", action="store_true", help="also time the 0.34B configuration in bf16")
    parser.add_argument("--big_only", action="store_true", help="time only the 0.34B configuration (implies --big)")
    parser.add_argument("--big_models", default="SASRecSPRINT",
                        help="models for --big (comma-separated; NAME:IMPL sets attention_impl, e.g. SASRecPPSPRINT:fused)")
    parser.add_argument("--big_w0", action="store_true", help="--big: also time each model with SPRINT weights 0")
    parser.add_argument("--big_batch_size", type=int, default=128)
    parser.add_argument("--big_max_len", type=int, default=200)
    parser.add_argument("--big_steps", type=int, default=10)
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="bf16 peak for --big's share (default: measured in this run, bf16 matmuls on the GPU)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--profile_steps", type=int, default=0,
                        help="after timing each row, profile this many training steps with torch.profiler and "
                             "print the top operators by device time (CUDA) or CPU time, and SPRINT on vs w0 "
                             "by operator")
    parser.add_argument("--profile_rows", type=int, default=12, help="operators listed per profile")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="a RecBole / plugin config key for every row, VALUE read as YAML (repeatable), e.g. "
                             "--set num_negatives=16 --set tf32=true --set worker=4")
    args = parser.parse_args(argv)
    args.settings = parse_settings(args.settings)
    if args.epochs is None:
        args.epochs = 2 if args.device == "cuda" else 1
    if args.max_batches is None:
        args.max_batches = 0 if args.device == "cuda" else 4
    args.inner_size = args.inner_size or 4 * args.hidden_size
    args.big = args.big or args.big_only
    return args


def parse_settings(items):
    """``["key=value", ...]`` -> ``{key: YAML value}``; ``SystemExit`` naming ``--set`` for an item without ``=``."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set takes KEY=VALUE (e.g. --set num_negatives=16), got {item!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


class FirstBatches:
    """The first ``count`` batches of a RecBole dataloader (all of them for count 0)."""

    def __init__(self, loader, count):
        self.loader, self.count = loader, count
        self.shuffle = loader.shuffle
        self.sampler = getattr(loader, "sampler", None)

    def __len__(self):
        return min(len(self.loader), self.count) if self.count else len(self.loader)

    def __iter__(self):
        return itertools.islice(iter(self.loader), len(self))


class FixedBatches:
    """``count`` batches drawn once from a RecBole dataloader and replayed on every pass (``fixed_batches`` shares
    them between the variants timed on that loader). Variants compared on random batches do different work: the
    fused attention skips key blocks in the padding and the losses work on the valid positions, so the cost of a step
    follows the lengths of its batch (ml-1m-3k's: 18 to 200 items, median 87)."""

    def __init__(self, loader, count):
        self.loader, self.shuffle = loader, loader.shuffle
        self.sampler = getattr(loader, "sampler", None)
        self.batches = list(itertools.islice(iter(loader), count))

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


_FIXED = {}


def fixed_batches(loader, count):
    """The same ``FixedBatches`` for every caller with this loader and count (the loaders are cached per data key:
    ``prepared_data``)."""
    key = (id(loader), count)
    if key not in _FIXED:
        _FIXED[key] = FixedBatches(loader, count)
    return _FIXED[key]


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def variants(name, modes):
    """``[(label, train_mode, overrides)]`` for one model, or ``(None, note)`` if it cannot run."""
    try:
        cls = get_model(name)
    except (ValueError, ImportError):  # RecBole's lookup of an unknown name may hit exlib's missing lightgbm
        return None, f"{name}: not found by get_model (not implemented in this checkout): skipped"
    own_modes = [m for m in modes if m == "prefix" or issubclass(cls, (FullSequence, ClozeFullSequence))]
    if not own_modes:
        return None, f"{name}: supports none of the modes {modes}: skipped"
    out = []
    for mode in own_modes:
        if issubclass(cls, SPRINT):
            out.append((f"{name} w0", mode, dict(SPRINT_OFF)))
            out.append((f"{name} on", mode, {}))
        else:
            out.append((name, mode, {}))
    return out, None


def base_config(args, name, mode, overrides, **extra):
    config = {
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "n_layers": args.n_layers,
        "n_heads": args.n_heads,
        "hidden_size": args.hidden_size,
        "inner_size": args.inner_size,
        "loss_type": args.loss_type if mode == "full_sequence" else "CE",
        "train_neg_sample_args": None,
        "device": args.device,
        "use_gpu": args.device == "cuda",
        "seed": args.seed,
        "reproducibility": False,  # cudnn.benchmark on, as a real GPU run
        "show_progress": False,
        "log_flops": False,
        "state": "ERROR",
        "enable_amp": args.amp,
        "amp_dtype": "bfloat16",
        "checkpoint_dir": os.path.join(tempfile.gettempdir(), "recbole_sprint_speed"),  # nothing in the checkout
    }
    if os.path.isdir(os.path.join(args.data_path, args.dataset)):  # else RecBole's own copy (ml-100k)
        config["data_path"] = args.data_path
    config["train_mode"] = mode  # explicit: SASRecSPRINT.yaml's default is full_sequence
    config["train_batch_size"] = args.full_batch_size if mode == "full_sequence" else args.batch_size
    config.update(getattr(args, "settings", {}))
    config.update(overrides)
    config.update(extra)
    return Config(model=name, dataset=args.dataset, config_dict=config)


_DATA = {}


def prepared_data(config, mode):
    """Dataloaders, cached per (dataset, mode, max length, batch size): the dataset does not depend on the model."""
    # the training dataloader's transform is the model's (BERT4Rec: mask_itemseq), so it is part of the key
    key = (config["dataset"], mode, config["MAX_ITEM_LIST_LENGTH"], config["train_batch_size"], config["transform"])
    if key not in _DATA:
        start = time.time()
        _DATA[key] = (config, data_preparation(config, create_dataset(config)))
        print(f"  data {key}: {time.time() - start:.1f} s, {len(_DATA[key][1][0].dataset)} training rows", flush=True)
    first_config, data = _DATA[key]
    # RecBole's transforms write field names into the config that built the dataloaders (BERT4Rec's mask_itemseq:
    # MASK_ITEM_SEQ, POS_ITEMS, ...); a model built from another config of the same key needs them too
    for name, value in first_config.final_config_dict.items():
        if name not in config.final_config_dict:
            config[name] = value
    return data


def compile_workers(pid=None):
    """PIDs of the child processes of ``pid`` (default: this process) that are Inductor's compile workers (a command
    line naming ``torch/_inductor/compile_worker``; Linux's ``/proc``, elsewhere none). While that pool was alive the
    training process's own CPU work ran 3x to 4.5x slower and SPRINT's share of a Beauty epoch went to +55% to +183%
    (H100, thirty-fifth and thirty-sixth sessions; benchmarks/results/README.md): a row timed beside it is marked."""
    pid = os.getpid() if pid is None else pid
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            if parent != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):  # not a process, or gone meanwhile
            continue
        if "_inductor/compile_worker" in command:
            found.append(int(entry))
    return sorted(found)


def count_targets(train_data, mode, config):
    if mode == "prefix":
        return len(train_data.dataset)
    return int(train_data.dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]].sum())


def build(config, train_data):
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return model, trainer


def time_row_fitting_memory(args, name, label, mode, overrides, min_batch=256):
    """:func:`time_row`, retried with half the batch after a CUDA out-of-memory error (down to ``min_batch``)."""
    batch_key = "full_batch_size" if mode == "full_sequence" else "batch_size"
    while True:
        try:
            return time_row(args, name, label, mode, overrides)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            half = getattr(args, batch_key) // 2
            if half < min_batch:
                raise
            print(f"  out of memory at {batch_key} {getattr(args, batch_key)}: retrying with {half}", flush=True)
            args = argparse.Namespace(**{**vars(args), batch_key: half})


def time_row(args, name, label, mode, overrides):
    config = base_config(args, name, mode, overrides)
    train_data = prepared_data(config, mode)[0]
    model, trainer = build(config, train_data)
    warm = FirstBatches(train_data, 1)
    trainer._train_epoch(warm, 0)  # warm-up: allocator, cudnn/cublas heuristics, lazy inits
    batches = FirstBatches(train_data, args.max_batches)
    seconds = []
    for epoch in range(args.epochs):
        synchronize(args.device)
        start = time.perf_counter()
        trainer._train_epoch(batches, epoch)
        synchronize(args.device)
        seconds.append((time.perf_counter() - start) * len(train_data) / len(batches))
    per_epoch = min(seconds)
    rows, targets = len(train_data.dataset), count_targets(train_data, mode, config)
    return {
        "label": label,
        "mode": mode,
        "s_epoch": per_epoch,
        "epochs_s": seconds,
        "estimated": len(batches) < len(train_data),
        "samples_s": rows / per_epoch,
        "targets_s": targets / per_epoch,
        "rows": rows,
        "batches": len(train_data),
        "batch_size": config["train_batch_size"],
        "params": sum(p.numel() for p in model.parameters()),
        "profile": profile_steps(args, trainer, train_data) if args.profile_steps else None,
    }


def profile_steps(args, trainer, train_data):
    """``{operator: (self time in ms per step, calls per step)}`` over ``--profile_steps`` training steps.

    Device (kernel) time on CUDA, CPU time on the CPU; the ``[wall]`` entry is the wall time per step.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    steps = FirstBatches(train_data, args.profile_steps)
    synchronize(args.device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        trainer._train_epoch(steps, 0)
        synchronize(args.device)
    wall = (time.perf_counter() - start) / len(steps)
    return profile_table(prof.key_averages(), len(steps), wall, args.device)


def profile_table(events, steps, wall, device):
    """``{key: (ms per step, calls per step)}`` of profiler ``events`` (``key_averages()``) over ``steps`` steps,
    with ``[wall]`` (wall ms per step) and ``[total]`` (ms per step the device, or on the CPU the host, was busy).

    On CUDA an operator's self device time is the time of the kernels it launched, and each of those kernels is an
    event of its own (device type CUDA) with the same time: the table lists both (operator names are readable,
    kernel names exact), but ``[total]`` sums the kernel events only, each GPU microsecond once (summing both would
    count it twice). On the CPU self times exclude the children: their sum is the host's busy time."""
    from torch.autograd import DeviceType

    cuda = device == "cuda"
    attribute = "self_device_time_total" if cuda else "self_cpu_time_total"
    ops, total = {}, 0.0
    for event in events:
        self_time = (getattr(event, attribute, 0) or 0) / 1e3 / steps
        if self_time > 0:
            ops[event.key] = (self_time, event.count / steps)
            if not cuda or event.device_type != DeviceType.CPU:
                total += self_time
    ops["[wall]"] = (wall * 1e3, 1.0)
    ops["[total]"] = (total, 0.0)
    return ops


def print_profile(label, mode, ops, limit):
    print()
    print(f"| profile {label} [{mode}] | ms/step | calls/step |")
    print("|---|---|---|")
    for key, (ms, calls) in sorted(ops.items(), key=lambda item: -item[1][0])[: limit + 2]:
        print(f"| {key[:70]} | {ms:.3f} | {calls:.0f} |")


def print_profile_diff(on, off, label, mode, limit):
    """What SPRINT adds or makes slower, on minus w0, ms/step and calls/step: ``[wall]`` and ``[total]`` first
    (always), then the ``limit`` operators whose difference is largest either way."""
    none = (0.0, 0.0)
    diff = {key: tuple(a - b for a, b in zip(on.get(key, none), off.get(key, none))) for key in set(on) | set(off)}
    summary = [key for key in ("[wall]", "[total]") if key in diff]
    operators = sorted((key for key in diff if key not in summary), key=lambda key: -abs(diff[key][0]))[:limit]
    print()
    print(f"| SPRINT on - w0, {label} [{mode}] | +ms/step | +calls/step |")
    print("|---|---|---|")
    for key in summary + operators:
        ms, calls = diff[key]
        print(f"| {key[:70]} | {ms:+.3f} | {calls:+.0f} |")


def matmul_params(model):
    """Weights of the backbone's linear layers (attention and feed-forward), embeddings and scoring excluded."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def transformer_flops(config, batch, n, valid_tokens, n_items, params):
    """Training FLOPs of one step (see the module docstring); ``params``: :func:`matmul_params`."""
    layers, d = config["n_layers"], config["hidden_size"]
    scored = n_items if config["loss_type"] == "CE" else 1 + config["num_negatives"]
    forward = 2 * batch * n * params + layers * 4 * batch * n * n * d + 2 * valid_tokens * d * scored
    return 3 * forward


def measure_bf16_peak(size=8192, rounds=10, per_round=10):
    """Best TFLOP/s over ``rounds`` of ``per_round`` back-to-back bf16 ``size``-cubed matmuls on the current GPU
    (after a warm-up round): one synchronisation per round, so its latency weighs 1/``per_round`` of a matmul."""
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    best = float("inf")
    for i in range(rounds + 1):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(per_round):
            torch.matmul(a, b)
        torch.cuda.synchronize()
        if i:
            best = min(best, (time.perf_counter() - start) / per_round)
    del a, b
    torch.cuda.empty_cache()
    return 2 * size**3 / best / 1e12


def big_entries(big_models, with_w0):
    """``--big_models`` -> ``[(label, model name, config overrides)]``; ``NAME:IMPL`` sets ``attention_impl``."""
    out = []
    for entry in big_models.split(","):
        name, _, impl = entry.strip().partition(":")
        extra = {"attention_impl": impl} if impl else {}
        label = name + (f" [{impl}]" if impl else "")
        if with_w0:
            out.append((f"{label} w0", name, {**extra, **SPRINT_OFF}))
        out.append((f"{label} on", name, extra))
    return out


def time_big(args, name, label, overrides):
    """Step time and TFLOP/s of the 0.34B configuration, full_sequence, bf16 autocast."""
    big_args = argparse.Namespace(**{**vars(args), "max_len": args.big_max_len, "full_batch_size": args.big_batch_size,
                                     "batch_size": args.big_batch_size, **BIG})
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = base_config(big_args, name, "full_sequence", overrides, enable_amp=True, amp_dtype="bfloat16")
    train_data = prepared_data(config, "full_sequence")[0]
    model, trainer = build(config, train_data)
    trainer._train_epoch(FirstBatches(train_data, 2), 0)  # warm-up
    steps = fixed_batches(train_data, args.big_steps)  # w0 and SPRINT on: the same batches
    synchronize(args.device)
    start = time.perf_counter()
    trainer._train_epoch(steps, 1)
    synchronize(args.device)
    step_s = (time.perf_counter() - start) / len(steps)
    lengths = config["ITEM_LIST_LENGTH_FIELD"]
    valid_tokens = sum(float(batch[lengths].sum()) for batch in steps) / len(steps)  # of the timed batches, per step
    params = matmul_params(model)
    flops = transformer_flops(config, config["train_batch_size"], config["MAX_ITEM_LIST_LENGTH"], valid_tokens,
                              model.n_items, params)
    memory = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
    row = {"label": label, "step_s": step_s, "tflops": flops / step_s / 1e12, "matmul_params": params,
           "params": sum(p.numel() for p in model.parameters()), "memory_gib": memory}
    del model, trainer
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return row


def overhead_rows(results):
    """SPRINT on vs w0 for the same model and mode, in %."""
    by_key = {(r["label"], r["mode"]): r for r in results}
    out = []
    for (label, mode), row in by_key.items():
        if label.endswith(" on") and (label[:-3] + " w0", mode) in by_key:
            base = by_key[(label[:-3] + " w0", mode)]
            out.append((label[:-3], mode, 100.0 * (row["s_epoch"] / base["s_epoch"] - 1.0)))
    return out


def main(argv=None):
    args = parse_args(argv)
    logging.disable(logging.WARNING)
    sys.argv = sys.argv[:1]  # RecBole's Config would parse our options as config keys
    modes = args.modes.split(",")
    plan, notes = [], []
    for name in [] if args.big_only else args.models.split(","):
        rows, note = variants(name, modes)
        if note:
            notes.append(note)
            print("note:", note, flush=True)
        else:
            plan += [(name, *row) for row in rows]
    results = []
    for name, label, mode, overrides in plan:
        print(f"timing {label} [{mode}] ...", flush=True)
        row = time_row_fitting_memory(args, name, label, mode, overrides)
        results.append(row)
        print(f"  {row['s_epoch']:.2f} s/epoch{' (estimated)' if row['estimated'] else ''}, "
              f"batch {row['batch_size']}; every epoch: {' '.join(f'{s:.3f}' for s in row['epochs_s'])}", flush=True)
        workers = compile_workers()
        if workers:
            print(f"  warning: Inductor's compile workers ran beside this row (pids {workers}): this process's CPU "
                  "work may have run several times slower; time it again in a fresh process", flush=True)
    big = []
    if args.big:
        for label, name, overrides in big_entries(args.big_models, args.big_w0):
            rows, note = variants(name, ["full_sequence"])
            if note:
                notes.append(f"--big {note}")
                continue
            print(f"timing {label} 0.34B bf16 ...", flush=True)
            big.append(time_big(args, name, label, overrides))
        peak_source = "given"
        if args.peak_tflops is None:
            peak_source = "measured"
            args.peak_tflops = measure_bf16_peak() if args.device == "cuda" else float("nan")
            print(f"  bf16 peak measured: {args.peak_tflops:.0f} TFLOP/s", flush=True)

    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print()
    shape = ("the 0.34B configuration only" if args.big_only else
             f"max_len {args.max_len}, {args.n_layers} layers x {args.hidden_size} (heads {args.n_heads}, inner "
             f"{args.inner_size}), amp {'bf16' if args.amp else 'off'}")
    print(f"# speed: {args.dataset}, {shape}, loss {args.loss_type} in full_sequence; device {device}; torch "
          f"{torch.__version__}" + "".join(f"; {key}: {value}" for key, value in args.settings.items()))
    if any(r["estimated"] for r in results):
        print(f"# ~ = estimated from the first {args.max_batches} batches of each epoch (after 1 warm-up batch)")
    for note in notes:
        print(f"# note: {note}")
    if results:
        print(f"| {'model':<22} | {'mode':<13} | {'s/epoch':>9} | {'samples/s':>10} | {'targets/s':>10} | {'rows':>8} | {'batch':>5} | {'batches':>7} |")
        print(f"|{'-' * 24}|{'-' * 15}|{'-' * 11}|{'-' * 12}|{'-' * 12}|{'-' * 10}|{'-' * 7}|{'-' * 9}|")
        for r in results:
            s = ("~" if r["estimated"] else "") + f"{r['s_epoch']:.2f}"
            print(f"| {r['label']:<22} | {r['mode']:<13} | {s:>9} | {r['samples_s']:>10.0f} | {r['targets_s']:>10.0f} "
                  f"| {r['rows']:>8} | {r['batch_size']:>5} | {r['batches']:>7} |")
    overheads = overhead_rows(results)
    if overheads:
        print()
        print("| SPRINT overhead (on vs w0) | mode | % per epoch |")
        print("|---|---|---|")
        for label, mode, pct in overheads:
            print(f"| {label} | {mode} | {pct:+.1f} |")
    if args.profile_steps:
        print(f"\n# profiles: {args.profile_steps} steps per row after the timed epochs; [total] = summed self time "
              f"({'of the device kernels' if args.device == 'cuda' else 'of all operators, CPU'}), [wall] = wall time "
              "per step")
        by_key = {(r["label"], r["mode"]): r for r in results}
        for r in results:
            print_profile(r["label"], r["mode"], r["profile"], args.profile_rows)
        for label, mode, _ in overheads:
            print_profile_diff(by_key[(label + " on", mode)]["profile"], by_key[(label + " w0", mode)]["profile"],
                               label, mode, args.profile_rows)
    prefix = {r["label"]: r for r in results if r["mode"] == "prefix"}
    if "SASRec" in prefix:
        print()
        print("| speed-up over RecBole SASRec prefix (s/epoch ratio) | x |")
        print("|---|---|")
        for r in results:
            if r["label"] != "SASRec":
                print(f"| {r['label']} [{r['mode']}] | {prefix['SASRec']['s_epoch'] / r['s_epoch']:.1f} |")
    if big:
        print()
        print(f"| 0.34B bf16 (12 x 1536, 24 heads, inner 6144, batch {args.big_batch_size}, len {args.big_max_len}) "
              f"| step s | TFLOP/s | % of {args.peak_tflops:.0f} ({peak_source}) | matmul params | all params | peak GiB |")
        print("|---|---|---|---|---|---|---|")
        for b in big:
            print(f"| {b['label']} | {b['step_s']:.3f} | {b['tflops']:.3g} | {100 * b['tflops'] / args.peak_tflops:.1f} "
                  f"| {b['matmul_params'] / 1e6:.1f}M | {b['params'] / 1e6:.1f}M | {b['memory_gib']:.1f} |")
        by_label = {b["label"]: b for b in big}
        for b in big:
            if b["label"].endswith(" on") and b["label"][:-3] + " w0" in by_label:
                base = by_label[b["label"][:-3] + " w0"]
                print(f"# 0.34B SPRINT overhead, {b['label'][:-3]}: {100 * (b['step_s'] / base['step_s'] - 1):+.1f}% a step")
    return {"rows": results, "big": big}


if __name__ == "__main__":
    main()

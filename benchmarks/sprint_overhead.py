"""SPRINT's per-step overhead over its own backbone (weights 0), with the two models timed in alternation.

    python benchmarks/sprint_overhead.py                       # CPU, host-bound tiny model (8 layers x 16)
    python benchmarks/sprint_overhead.py --device cuda --max_len 200 --hidden_size 256 --batch_size 128

speed.py times its rows one after another, which a shared machine's drifting load turns into noise of tens of
percent on a small difference. Here both models train ``--steps`` steps in turn, ``--rounds`` times, and the
fastest round of each counts. The default configuration is tiny on purpose: its arithmetic is negligible, so the
difference measures the host time of SPRINT's extra operators (dispatch, autograd nodes, Python), which is what a
small model on a fast GPU cannot hide. The table is printed last.
"""

import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import speed  # noqa: E402  (benchmarks/speed.py: config, data and model helpers)


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
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: less noise)")
    parser.add_argument("--compile", default="", metavar="MODE[,MODE]",
                        help="also time SPRINT with sprint_compile=MODE for each (e.g. default)")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args(argv)
    # speed.base_config's remaining options
    args.inner_size, args.full_batch_size, args.loss_type, args.amp = 4 * args.hidden_size, args.batch_size, "CE", False
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.disable(logging.WARNING)
    sys.argv = sys.argv[:1]  # RecBole's Config would parse our options as config keys
    torch.set_num_threads(args.threads)
    rows = {}
    variants = [("w0", dict(speed.SPRINT_OFF)), ("on", {})]
    for mode in filter(None, args.compile.split(",")):
        variants.append((f"on, compile {mode}", {"sprint_compile": mode}))
    for label, overrides in variants:
        config = speed.base_config(args, args.model, "full_sequence", overrides)
        train_data = speed.prepared_data(config, "full_sequence")[0]
        try:
            model, trainer = speed.build(config, train_data)
            trainer._train_epoch(speed.FirstBatches(train_data, 5), 0)  # warm-up (and compilation)
        except Exception as error:  # one failing variant (e.g. a compile mode) must not cost the others' timings
            print(f"  {label}: failed in warm-up: {type(error).__name__}: {str(error).splitlines()[0]}", flush=True)
            continue
        rows[label] = (trainer, speed.FirstBatches(train_data, args.steps))
    best = {label: float("inf") for label in rows}
    for _ in range(args.rounds):
        for label, (trainer, batches) in rows.items():
            speed.synchronize(args.device)
            start = time.perf_counter()
            trainer._train_epoch(batches, 1)
            speed.synchronize(args.device)
            best[label] = min(best[label], (time.perf_counter() - start) / len(batches) * 1e3)
    print()
    print(f"# {args.model}, {args.dataset}, full_sequence, {args.n_layers} layers x {args.hidden_size} "
          f"(heads {args.n_heads}), len {args.max_len}, batch {args.batch_size}, {args.device}, "
          f"{args.threads} thread(s); fastest of {args.rounds} alternating rounds of {args.steps} steps")
    print("| SPRINT weights | ms/step |")
    print("|---|---|")
    for label in rows:
        print(f"| {label} | {best[label]:.2f} |")
    for label in [label for label in rows if label != "w0" and "w0" in rows]:
        print(f"| {label} - w0 | {best[label] - best['w0']:+.2f} ({100 * (best[label] / best['w0'] - 1):+.1f}%) |")


if __name__ == "__main__":
    main()

"""Validation NDCG@10 reached in equal training wall time: RecBole's prefix training vs full_sequence.

    python benchmarks/equal_time.py --device cuda --max_len 200 --budget 150       # ml-1m-3k, 2 x 256
    python benchmarks/equal_time.py --dataset ml-100k --max_len 50 --hidden_size 64 --budget 60   # CPU

Rows (default): RecBole's own ``SASRec`` in prefix mode (one training row per prefix, RecBole's default) and
``SASRecSPRINT`` with SPRINT weights 0 in full_sequence mode (the same backbone, one row per user, a loss at
every position), both with the full-softmax CE loss, the same size, optimiser and learning rate. Each row trains
epoch after epoch until its summed *training* time reaches ``--budget`` seconds (the epoch that crosses the
budget is finished and counted); validation (full ranking, NDCG@10) runs after each prefix epoch and about
every ``--eval_every`` seconds of full_sequence training, and is not counted as training time. The table
printed last has, per row: epochs, training seconds, the best validation NDCG@10 within the budget and the
training time at which it was reached; a curve per row is printed above it.

Uses benchmarks/speed.py's configuration and data helpers (same RecBole training path).
"""

import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import speed  # noqa: E402  (benchmarks/speed.py: config, data and model helpers)

ROWS = [("SASRec", "SASRec prefix", "prefix", {}), ("SASRecSPRINT", "SASRecSPRINT w0 full", "full_sequence",
                                                     dict(speed.SPRINT_OFF))]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-3k")
    parser.add_argument("--data_path", default=os.path.join(speed.REPO, "..", "shared", "datasets"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--max_len", type=int, default=200)
    parser.add_argument("--n_layers", type=int, default=2)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--n_heads", type=int, default=4)
    parser.add_argument("--inner_size", type=int, default=None, help="default: 4 * hidden_size")
    parser.add_argument("--batch_size", type=int, default=2048, help="prefix rows per batch (RecBole's default)")
    parser.add_argument("--full_batch_size", type=int, default=128, help="users per batch in full_sequence mode")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--budget", type=float, default=150.0, help="training seconds per row")
    parser.add_argument("--eval_every", type=float, default=10.0,
                        help="full_sequence: validate after the epoch that completes each further this many seconds")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args(argv)
    args.inner_size = args.inner_size or 4 * args.hidden_size
    args.loss_type, args.amp = "CE", False
    return args


def train_for(args, name, mode, overrides):
    """Train one row for ``--budget`` training seconds; returns ``[(epoch, train_seconds, valid NDCG@10)]``."""
    config = speed.base_config(args, name, mode, overrides, learning_rate=args.learning_rate,
                               metrics=["NDCG", "Hit"], topk=[10], valid_metric="NDCG@10",
                               eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                                          "mode": "full"}, eval_batch_size=4096)
    train_data, valid_data, _ = speed.prepared_data(config, mode)
    _, trainer = speed.build(config, train_data)
    curve, trained, epoch, last_eval = [], 0.0, 0, 0.0
    while trained < args.budget:
        speed.synchronize(args.device)
        start = time.perf_counter()
        trainer._train_epoch(train_data, epoch)
        speed.synchronize(args.device)
        trained += time.perf_counter() - start
        epoch += 1
        if mode == "prefix" or trained - last_eval >= args.eval_every or trained >= args.budget:
            score, _ = trainer._valid_epoch(valid_data)
            curve.append((epoch, trained, float(score)))
            last_eval = trained
            print(f"  epoch {epoch}: {trained:.2f} s trained, valid NDCG@10 {score:.4f}", flush=True)
    return curve


def main(argv=None):
    args = parse_args(argv)
    logging.disable(logging.WARNING)
    sys.argv = sys.argv[:1]  # RecBole's Config would parse our options as config keys
    results = []
    for name, label, mode, overrides in ROWS:
        print(f"training {label} for {args.budget:g} s ...", flush=True)
        results.append((label, train_for(args, name, mode, overrides)))

    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print()
    print(f"# equal training time: {args.dataset}, max_len {args.max_len}, {args.n_layers} layers x {args.hidden_size} "
          f"(heads {args.n_heads}), CE, lr {args.learning_rate}, budget {args.budget:g} s per row; {device}; "
          f"torch {torch.__version__}")
    print("| row | epochs | train s | best valid NDCG@10 | at train s | evaluations |")
    print("|---|---|---|---|---|---|")
    for label, curve in results:
        best = max(curve, key=lambda point: point[2])
        print(f"| {label} | {curve[-1][0]} | {curve[-1][1]:.2f} | {best[2]:.4f} | {best[1]:.2f} | {len(curve)} |")


if __name__ == "__main__":
    main()

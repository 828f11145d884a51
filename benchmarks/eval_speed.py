"""What one full-ranking evaluation costs, per metric list: seconds per evaluation and rows through the model.

    python benchmarks/eval_speed.py                                   # CPU: SASRec++ on ml-1m-3k, validation split
    python benchmarks/eval_speed.py --device cuda --n_layers 8 --hidden_size 256 --max_len 200

Builds one model (``--model``, untrained: evaluation's work does not depend on the weights) and times
``trainer.evaluate(valid_data)`` (RecBole's evaluation loop through the plugin's trainer: scoring every item,
history masking, the collector, the metrics) once per metric list, in alternating rounds (each round starting one
list later), and reports the fastest round of each. ``rows/user`` counts the sequences that went through the
model's ``forward`` per evaluated user: 1 is one forward pass a user (the scores); more means a metric made the
evaluation run the model again. ``SpectralCollapse`` reads the user states of the scoring pass (the trainer then
scores by the model's score factors, :mod:`recbole_sprint.trainer.evaluation`), plus the factor check's 16 rows
(the collector compares the score factors with ``full_sort_predict`` on the first 8 rows of each evaluation).

CPU timings on a shared machine are noisy: compare rows of one run, not runs.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import speed  # noqa: E402
from sprint_overhead import rotated  # noqa: E402

METRIC_LISTS = {
    "ranking": ["Hit", "NDCG"],
    "+ tail": ["Hit", "NDCG", "ARP", "TailExposure", "TailCoverage", "TailRecall", "HistoryShare"],
    "+ tail + SpectralCollapse (the paper tables')": ["Hit", "NDCG", "ARP", "TailExposure", "TailCoverage",
                                                     "TailRecall", "HistoryShare", "SpectralCollapse"],
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SASRecPPSPRINT")
    parser.add_argument("--dataset", default="ml-1m-3k")
    parser.add_argument("--data_path", default=os.path.join(speed.REPO, "..", "shared", "datasets"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--n_layers", type=int, default=2)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--n_heads", type=int, default=2)
    parser.add_argument("--eval_batch_size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: less noise)")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args(argv)
    args.inner_size, args.loss_type, args.amp = 4 * args.hidden_size, "CE", False  # for speed.base_config
    args.full_batch_size = args.batch_size = 128  # training batches: built, never used
    return args


class CountedRows:
    """Wraps ``model.forward``: adds the batch size of every call to ``rows``."""

    def __init__(self, model):
        self.forward, self.rows = model.forward, 0

    def __call__(self, item_seq, *args, **kwargs):
        self.rows += len(item_seq)
        return self.forward(item_seq, *args, **kwargs)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {}
    for label, metrics in METRIC_LISTS.items():
        overrides = {"metrics": metrics, "topk": [1, 5, 10], "valid_metric": "NDCG@10",
                     "eval_batch_size": args.eval_batch_size}
        config = speed.base_config(args, args.model, "full_sequence", overrides)
        train_data, valid_data, _ = speed.prepared_data(config, "full_sequence")
        model, trainer = speed.build(config, train_data)
        counter = CountedRows(model)
        model.forward = counter
        trainer.eval_collector.data_collect(train_data)  # popularity counts, as trainer.fit does
        trainer.evaluate(valid_data, load_best_model=False)  # warm-up
        rows[label] = {"trainer": trainer, "data": valid_data, "counter": counter, "best": float("inf")}
    users = len(next(iter(rows.values()))["data"].dataset)
    for round_index in range(args.rounds):
        for label in rotated(list(rows), round_index):
            row = rows[label]
            row["counter"].rows = 0
            speed.synchronize(args.device)
            began = time.perf_counter()
            result = row["trainer"].evaluate(row["data"], load_best_model=False)
            speed.synchronize(args.device)
            row["best"] = min(row["best"], time.perf_counter() - began)
            row["rows"], row["result"] = row["counter"].rows, result
    print()
    print(f"# {args.model}, {args.dataset}, {args.n_layers} layers x {args.hidden_size}, len {args.max_len}, "
          f"{users} evaluated users, eval_batch_size {args.eval_batch_size}, {args.device}, {args.threads} thread(s); "
          f"fastest of {args.rounds} alternating rounds")
    print("| metrics | s/evaluation | rows/user | NDCG@10 |")
    print("|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['best']:.3f} | {row['rows'] / users:.3f} | {row['result']['ndcg@10']:.4f} |")
    return rows


if __name__ == "__main__":
    main()

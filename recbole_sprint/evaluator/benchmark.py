"""Seconds per evaluation of RecBole's popularity metrics vs. the plugin's vectorised versions (and the plugin's
own metrics) at ml-1m scale on random top-K lists; prints a markdown table. Results are checked to be equal.

    python -m recbole_sprint.evaluator.benchmark [--users 6040] [--items 3707] [--k 50] [--repeats 3]
"""

import argparse
import time
from collections import Counter

import numpy as np
import recbole.evaluator.metrics as recbole_metrics
import torch
from recbole.evaluator.collector import DataStruct

import recbole_sprint  # noqa: F401  (registers the metrics)
from recbole_sprint.evaluator import metrics as plugin_metrics


def _seconds(metric, struct, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = metric.calculate_metric(struct)
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=6040)
    parser.add_argument("--items", type=int, default=3707, help="num_items, padding included")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, args.items)  # Zipf-like: popular items recommended more often
    weights /= weights.sum()
    items = np.stack([rng.choice(np.arange(1, args.items), args.k, replace=False, p=weights) for _ in range(args.users)])
    counts = rng.zipf(1.5, size=args.items).clip(max=5000)
    struct = DataStruct()
    struct.set("rec.items", torch.from_numpy(items))
    struct.set("data.count_items", Counter({i: int(counts[i]) for i in range(1, args.items)}))
    struct.set("data.num_items", args.items)
    popularity = torch.from_numpy(counts).long()
    popularity[0] = 0
    struct.set("data.item_popularity", popularity)
    struct.set("rec.positives", torch.stack([torch.arange(args.users), torch.from_numpy(items[:, 0])], dim=1))

    topk = [1, 5, 10, args.k]
    print(f"{args.users} users x top-{args.k}, {args.items} items; best of {args.repeats}; seconds per evaluation")
    print("| metric | tail_ratio | RecBole | recbole_sprint | equal |")
    print("|---|---|---|---|---|")
    for name in ["AveragePopularity", "TailPercentage", "GiniIndex"]:
        for tail_ratio in [0.1, 0.8] if name == "TailPercentage" else [None]:
            config = {"topk": topk, "metric_decimal_place": 4, "tail_ratio": tail_ratio}
            theirs, their_result = _seconds(getattr(recbole_metrics, name)(config), struct, args.repeats)
            ours, our_result = _seconds(getattr(plugin_metrics, name)(config), struct, args.repeats)
            print(f"| {name} | {tail_ratio} | {theirs:.3f} | {ours:.4f} | {their_result == our_result} |")
    config = {"topk": topk, "metric_decimal_place": 4, "tail_ratio": 0.8, "popularity_source": "train"}
    for name in ["ARP", "TailCoverage", "TailExposure", "TailRecall"]:
        ours, _ = _seconds(getattr(plugin_metrics, name)(config), struct, args.repeats)
        print(f"| {name} | 0.8 | - | {ours:.4f} | - |")


if __name__ == "__main__":
    main()

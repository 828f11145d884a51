"""Tiny atomic files written to a temporary folder, for tests of data checks and the command line."""

import os
import random

HEADER = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]


def tiny_rows(users=12, per_user=6, items=20, seed=0):
    """``users`` x ``per_user`` interactions (user, item, rating, increasing timestamp), as lists of strings."""
    rng = random.Random(seed)
    return [[str(u), str(rng.randint(1, items)), str(rng.randint(1, 5)), str(1000 + 100 * u + j)]
            for u in range(1, users + 1) for j in range(per_user)]


def write_inter(data_path, name, rows=None, header=None):
    """Write ``<data_path>/<name>/<name>.inter`` (tab-separated); returns its path."""
    folder = os.path.join(str(data_path), name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.inter")
    lines = ["\t".join(header or HEADER)] + ["\t".join(row) for row in (tiny_rows() if rows is None else rows)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def tiny_data_config(data_path, **overrides):
    """A config dict for a seconds-long run on a tiny dataset under ``data_path``."""
    config = {
        "data_path": str(data_path),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "epochs": 1,
        "n_layers": 1,
        "n_heads": 1,
        "hidden_size": 8,
        "inner_size": 16,
        "MAX_ITEM_LIST_LENGTH": 5,
        "train_batch_size": 64,
        "eval_batch_size": 256,
        "metrics": ["Recall", "NDCG"],
        "topk": [5],
        "valid_metric": "NDCG@5",
        "show_progress": False,
        "log_flops": False,
        "checkpoint_dir": os.path.join(str(data_path), "saved"),
        "state": "ERROR",
    }
    config.update(overrides)
    return config

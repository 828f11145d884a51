"""Shared by the search tests: a tiny dataset and search files, and trials.csv reading."""

import csv
import os

import yaml

ML100K_INTER = os.path.join(os.path.dirname(os.path.abspath(__import__("recbole").__file__)), "dataset_example",
                            "ml-100k", "ml-100k.inter")


def tiny_search_files(tmp_path, tiny, hyper_text, n_users=120):
    """A small dataset (the first ``n_users`` users of ml-100k), a fixed-config yaml and a .hyper file."""
    folder = tmp_path / "data" / "ml-tiny"
    folder.mkdir(parents=True)
    with open(ML100K_INTER) as source, open(folder / "ml-tiny.inter", "w") as target:
        target.write(source.readline())
        for line in source:
            if int(line.split("\t", 1)[0]) <= n_users:
                target.write(line)
    # train_mode prefix: many steps an epoch on 120 users, so one epoch separates good and bad learning rates
    config = tiny(data_path=str(tmp_path / "data"), load_col={"inter": ["user_id", "item_id", "timestamp"]},
                  train_mode="prefix")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "space.hyper").write_text(hyper_text)
    return str(tmp_path / "tiny.yaml"), str(tmp_path / "space.hyper")


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))

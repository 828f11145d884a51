"""Before/after of history masking (``eval_exclude_history``) on one trained model, plus RecBole's Pop baseline.

Trains the model once (the main job's flow, best checkpoint on validation with masking on), then evaluates the
same weights on the test split twice: ranking every item (RecBole's sequential evaluation) and ranking only
items outside the user's history. ``Pop`` (RecBole's popularity baseline, a general model: RecBole always ranks
it without the user's training and validation items) is the sanity row, on the same leave-one-out split.
Prints a Markdown table.

    python benchmarks/history_masking.py --model=SASRecSPRINT --dataset=ml-100k --epochs=20 \\
        --train_mode=full_sequence --loss_type=BCE --num_negatives=16

Any ``--key=value`` is a config override (RecBole's syntax); ``--model`` and ``--dataset`` pick the run.
"""

import argparse
import sys
import tempfile

METRICS = ["NDCG", "Hit", "TailExposure", "HistoryShare"]
SEQUENTIAL_ONLY = ("train_mode", "loss_type", "num_negatives", "negatives_exclude", "train_batch_size")
COLUMNS = ["ndcg@5", "hit@1", "hit@5", "tailexposure@1", "historyshare@1"]


def evaluate_both_ways(model_name, dataset_name, overrides):
    """``{(model, masked): test result}`` for ``model_name`` (trained) and Pop, masked and unmasked."""
    from recbole.utils import init_seed

    import recbole_sprint  # noqa: F401  (compatibility shims)
    from recbole_sprint.config import Config
    from recbole_sprint.data import create_dataset, data_preparation
    from recbole_sprint.utils import get_model, get_trainer

    results = {}
    for name in (model_name, "Pop"):
        config_dict = dict(overrides)
        if name == "Pop":  # counts training interactions once; the sequential training options do not apply
            config_dict = {k: v for k, v in config_dict.items() if k not in SEQUENTIAL_ONLY}
            config_dict["epochs"] = 1
        config = Config(model=name, dataset=dataset_name, config_dict=config_dict)
        init_seed(config["seed"], config["reproducibility"])
        train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(name)(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
        trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        for masked in (False, True) if name != "Pop" else (True,):
            trainer.exclude_history = masked
            results[(name, masked)] = trainer.evaluate(test_data, load_best_model=True)
    return results


def markdown(results):
    lines = ["| model | history masked | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for (name, masked), result in results.items():
        values = " | ".join(f"{float(result[c]):.4f}" for c in COLUMNS)
        lines.append(f"| {name} | {'yes' if masked else 'no'} | {values} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="SASRecSPRINT")
    parser.add_argument("--dataset", default="ml-100k")
    args, rest = parser.parse_known_args(argv)
    from recbole_sprint.compat import literal_value  # the plugin's parsing of --key=value: literals, never code

    overrides = {key: literal_value(value) for key, _, value in (item.lstrip("-").partition("=") for item in rest)}
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from sys.argv: the overrides go in the dict
    with tempfile.TemporaryDirectory() as folder:
        overrides = {
            "metrics": METRICS, "topk": [1, 5, 10], "valid_metric": "NDCG@5", "state": "WARNING",
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
            "show_progress": False, "checkpoint_dir": folder, **overrides,
        }
        print(markdown(evaluate_both_ways(args.model, args.dataset, overrides)))


if __name__ == "__main__":
    main()

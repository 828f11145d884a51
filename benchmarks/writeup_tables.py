"""The numbers of benchmarks/results/README.md, from the stores: its tables (means over the seeds each row lists: the
main table, the depth sweep, the unmasked SASRec++ rows, the parameter-scaling sweep, HSTU with the SwiGLU
feed-forward block, and BERT4Rec under the cloze protocol once its store has runs), one table per SPRINT-weight search
(`tune/<search>/`: each trial's test metrics) and the paired comparisons its text quotes (SPRINT row vs its backbone
row, over the seeds both have).

    python benchmarks/writeup_tables.py                 # the tables, then the comparisons
    python benchmarks/writeup_tables.py --results DIR   # stores elsewhere (the GPU machine's RESULTS)

tests/benchmark/test_results_writeup.py checks that the committed write-up's tables are these numbers.
"""

import argparse
import csv
import json
import math
import os
import statistics

from scipy import stats as scipy_stats

from recbole_sprint.benchmark.stats import paired_test, relative_gain

HERE = os.path.dirname(os.path.abspath(__file__))
# write-up column -> (stored metric, decimals); the test's COLUMNS are these
COLUMNS = {"NDCG@5": ("ndcg@5", 4), "HR@1": ("hit@1", 4), "HR@5": ("hit@5", 4), "HR@10": ("hit@10", 4),
           "Fair-0.8@1": ("tailexposure@1", 3), "ARP@5": ("arp@5", 0), "TailCoverage@10": ("tailcoverage@10", 3),
           "HistoryShare@1": ("historyshare@1", 3), "SpectralCollapse": ("spectralcollapse", 3)}
ROW_ORDER = ["Pop", "SASRec", "SASRecSPRINT", "HSTU", "HSTUSPRINT", "HSTU+FFN", "HSTU+FFN-SPRINT",
             "HSTU+FFN-SPRINT-noattn", "BERT4Rec", "BERT4RecSPRINT", "SASRec++", "SASRec++-SPRINT"]
PAIRS = [("SASRecSPRINT", "SASRec"), ("HSTUSPRINT", "HSTU"), ("HSTU+FFN-SPRINT", "HSTU+FFN"),
         ("HSTU+FFN-SPRINT-noattn", "HSTU+FFN"), ("BERT4RecSPRINT", "BERT4Rec"), ("SASRec++-SPRINT", "SASRec++")]
COMPARED = ["ndcg@5", "hit@1", "hit@10", "tailexposure@1", "arp@5", "tailcoverage@10", "spectralcollapse"]
SMALLER_IS_BETTER = {"arp@5", "spectralcollapse"}
POINTS = {"tailexposure@1", "tailcoverage@10"}  # differences in percentage points (the paper's Fair convention)
# stores with a plain table (rows x the COLUMNS) and their comparisons, printed when the store has runs
PLAIN = {"paper_hstu_ffn": "HSTU with the SwiGLU feed-forward block (paper_hstu_ffn.yaml)",
         "paper_bert4rec": "BERT4Rec, cloze protocol, the paper's schedule (paper_bert4rec.yaml)"}


def records(results, name):
    path = os.path.join(results, name, "runs.jsonl")
    with open(path) as handle:
        runs = [json.loads(line) for line in handle if line.strip()]
    latest = {}
    for run in runs:  # a rerun's later record wins, as in the rendered tables
        latest[run["run_id"]] = run
    return list(latest.values())


def formatted(value, decimals):
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("0.") else text


def layers(run):
    return run["variant"].get("n_layers")


def groups(runs, with_layers):
    """``{(dataset, row, layers or None): [runs]}`` in the write-up's order."""
    found = {}
    for run in runs:
        found.setdefault((run["dataset"], run["model"], layers(run) if with_layers else None), []).append(run)
    order = {row: i for i, row in enumerate(ROW_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][2] or 0, order.get(kv[0][1], 99), kv[0][1])))


def table(runs, with_layers):
    head = ["dataset", "row"] + (["layers"] if with_layers else []) + ["seeds"] + list(COLUMNS)
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for (dataset, row, depth), group in groups(runs, with_layers).items():
        cells = [dataset, row] + ([str(depth)] if with_layers else [])
        cells.append(",".join(sorted(str(run["seed"]) for run in group)))
        for metric, decimals in COLUMNS.values():
            cells.append(formatted(statistics.mean(run["test_result"][metric] for run in group), decimals))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


UNMASKED = {"NDCG@5": "ndcg@5", "HR@5": "hit@5", "NDCG@10": "ndcg@10", "HR@1": "hit@1",
            "tail share of top-1": "tailexposure@1", "top-1 consumed": "historyshare@1"}


def unmasked_table(stores):
    """The SASRec++ rows' test metrics with the history left in the ranking (``test_result_unmasked``: the same
    checkpoint tested once more), the issue's reference numbers' protocol, one line per (store, dataset, row, depth)."""
    head = ["store", "dataset", "row", "layers", "seeds"] + list(UNMASKED)
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, runs in stores.items():
        runs = [run for run in runs if run["model"].startswith("SASRec++") and run.get("test_result_unmasked")]
        for (dataset, row, _), group in groups(runs, True).items():
            depth = layers(group[0]) or group[0]["config"].get("n_layers")
            cells = [name, dataset, row, str(depth), ",".join(sorted(str(run["seed"]) for run in group))]
            cells += [formatted(statistics.mean(run["test_result_unmasked"][metric] for run in group),
                                3 if metric in ("tailexposure@1", "historyshare@1") else 4)
                      for metric in UNMASKED.values()]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


WEIGHTS = ("sprint_attn_weight", "sprint_ffn_weight", "sprint_emb_weight")


def completed_trials(folder):
    """The rows of ``folder/trials.csv`` whose trial completed (none if the search has no ``trials.csv``)."""
    path = os.path.join(folder, "trials.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["status"] == "completed"]


def searches(results):
    """The committed weight searches: folders of ``results/tune`` with at least one completed trial (a finished
    search has a ``best_trial.json`` too; an unfinished one resumes from its completed trials)."""
    folder = os.path.join(results, "tune")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [name for name in names if completed_trials(os.path.join(folder, name))]


def search_table(results, name):
    """One search's trials, one seed each: the three SPRINT weights (searched ones from ``trials.csv``, the others the
    search's fixed values), the epochs trained, the validation score the search chose on, and the test COLUMNS; the
    chosen trial (``best_trial.json``) in bold. Then, in italics, the stored runs the trials are read against: the
    search's spec store at its dataset and seed, rows of its backbone and of the spec's SPRINT cell, and Pop
    (``paper_main``). An unfinished search (no ``best_trial.json``) has no chosen trial."""
    folder = os.path.join(results, "tune", name)
    with open(os.path.join(folder, "search_settings.json")) as handle:
        settings = json.load(handle)
    chosen = None
    if os.path.exists(os.path.join(folder, "best_trial.json")):
        with open(os.path.join(folder, "best_trial.json")) as handle:
            chosen = json.load(handle)["trial_id"]
    trials = completed_trials(folder)
    valid = settings["valid_metric"].replace("ndcg", "NDCG")
    head = ["trial", "λ_attn / λ_ffn / λ_emb", "epochs", f"valid {valid}"] + list(COLUMNS)
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    def line(label, weights, epochs, valid, test):  # test: stored metric -> value
        cells = [label, " / ".join(f"{w:g}" for w in weights) if weights else "", epochs, formatted(valid, 4)]
        cells += [formatted(test[metric], decimals) for metric, decimals in COLUMNS.values()]
        return "| " + " | ".join(cells) + " |"

    for row in sorted(trials, key=lambda row: row["trial_id"]):
        number = str(int(row["trial_id"].rsplit("_", 1)[1]))
        weights = [float(row[w]) if w in row else float(settings["fixed"].get(w, 0.0)) for w in WEIGHTS]
        test = {metric: float(row[f"test_{metric}"]) for metric, _ in COLUMNS.values()}
        lines.append(line(f"**{number} (chosen)**" if row["trial_id"] == chosen else number, weights, row["epochs"],
                          float(row["best_valid_score"]), test))
    for store, run in reference_runs(results, settings):
        weights = [float(run["config"].get(w) or 0.0) for w in WEIGHTS] if run["model"] != "Pop" else None
        lines.append(line(f"*{store}: {run['model']}*", weights, f"≤ {run['config']['epochs']}",
                          run["best_valid_score"], run["test_result"]))
    return "\n".join(lines)


def reference_runs(results, settings):
    """``[(store, run)]``: the runs of the search's spec store with its dataset and training seed whose row is the spec
    model (``SASRec++-SPRINT``) or its backbone (``SASRec++``), then ``paper_main``'s Pop run there."""
    store = os.path.splitext(os.path.basename(settings["spec"]))[0]
    backbone = settings["spec_model"].removesuffix("SPRINT").removesuffix("-")
    found = []
    for name, models in ((store, [backbone, settings["spec_model"]]), ("paper_main", ["Pop"])):
        runs = [run for run in records(results, name) if run["model"] in models
                and run["dataset"] == settings["dataset"] and run["seed"] == settings["fixed"]["seed"]]
        found += [(name, run) for run in sorted(runs, key=lambda run: models.index(run["model"]))]
    return found


SIZES = ["XXS", "XS", "Small", "Base", "Large", "XL", "XXL"]  # the paper's order (sprint.md 4.3)


def size_groups(runs):
    """``{(dataset, row, size): [runs]}`` of the scaling sweep, by dataset, then the paper's size order, then row."""
    found = {}
    for run in runs:
        found.setdefault((run["dataset"], run["model"], run["variant"]["size"]), []).append(run)
    order = {row: i for i, row in enumerate(ROW_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (kv[0][0], SIZES.index(kv[0][2]), order.get(kv[0][1], 99))))


def scaling_table(runs):
    """The parameter-scaling sweep: one line per (dataset, row, size), in the paper's size order; ``non-embedding``
    is the stored non-embedding parameter count (the x axis of the scaling plots)."""
    head = ["dataset", "row", "size", "layers x d", "non-embedding", "seeds"] + list(COLUMNS)
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for (dataset, row, size), group in size_groups(runs).items():
        config = group[0]["config"]
        cells = [dataset, row, size, f"{config['n_layers']} x {config['hidden_size']}",
                 f"{group[0]['n_params_non_embedding'] / 1e6:.2f}M", ",".join(sorted(str(run["seed"]) for run in group))]
        for metric, decimals in COLUMNS.values():
            cells.append(formatted(statistics.mean(run["test_result"][metric] for run in group), decimals))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_comparisons(runs):
    """SPRINT vs its backbone at each size, over the seeds both have."""
    found = size_groups(runs)
    for dataset, size in dict.fromkeys((d, z) for d, _, z in found):  # in size_groups' order
        for model, base in PAIRS:
            model_group, base_group = found.get((dataset, model, size)), found.get((dataset, base, size))
            if model_group and base_group:
                parts = [describe(*compare(model_group, base_group, metric), metric) for metric in COMPARED]
                print(f"- {dataset} {model} vs {base}, {size}: " + "; ".join(parts))


def by_seed(group, metric):
    return {run["seed"]: run["test_result"][metric] for run in group}


def compare(model_group, base_group, metric):
    """``(gain, p, n)`` of the model over the backbone on the seeds both have: gain in % (pp for POINTS)."""
    model, base = by_seed(model_group, metric), by_seed(base_group, metric)
    seeds = sorted(set(model) & set(base))
    if not seeds:
        return math.nan, math.nan, 0
    gain = relative_gain(statistics.mean(model[s] for s in seeds), statistics.mean(base[s] for s in seeds),
                         smaller_is_better=metric in SMALLER_IS_BETTER, absolute=metric in POINTS)
    test = paired_test({s: model[s] for s in seeds}, {s: base[s] for s in seeds})
    return gain, test["p_value"], len(seeds)


def describe(gain, p, n, metric):
    unit = "pp" if metric in POINTS else "%"
    p_text = "no test" if math.isnan(p) else f"p = {p:.3g}"
    return f"{metric} {gain:+.1f}{unit} ({p_text}, {n} seeds)"


def main_comparisons(runs):
    found = groups(runs, False)
    for dataset in sorted({key[0] for key in found}):
        for model, base in PAIRS:
            model_group, base_group = found.get((dataset, model, None)), found.get((dataset, base, None))
            if model_group and base_group:
                parts = [describe(*compare(model_group, base_group, metric), metric) for metric in COMPARED]
                print(f"- {dataset} {model} vs {base}: " + "; ".join(parts))


def depth_comparisons(depth_runs, main_runs):
    """SPRINT vs baseline at each depth, over the depth sweep's seeds (at 2 layers the main table's runs: the same
    config), and a line through the per-seed NDCG@5 gains against the depth."""
    found = groups(depth_runs, True)
    main = groups(main_runs, False)
    for dataset in sorted({key[0] for key in found}):
        sweep_seeds = {run["seed"] for run in depth_runs if run["dataset"] == dataset}
        for model, base in PAIRS:
            swept = sorted({key[2] for key in found if key[0] == dataset and key[1] in (model, base)})
            points = []
            for depth in sorted(set(swept) | {2}) if swept else []:
                model_group, base_group = found.get((dataset, model, depth)), found.get((dataset, base, depth))
                if depth == 2 and not model_group:  # the 2-layer SPRINT cells are the main table's
                    model_group, base_group = main.get((dataset, model, None)), main.get((dataset, base, None))
                if not model_group or not base_group:
                    continue
                model_group = [run for run in model_group if run["seed"] in sweep_seeds]
                base_group = [run for run in base_group if run["seed"] in sweep_seeds]
                if not set(by_seed(model_group, "ndcg@5")) & set(by_seed(base_group, "ndcg@5")):
                    print(f"- {dataset} {model} vs {base}, {depth} layers: no seed in both rows (seeds "
                          f"{sorted(by_seed(model_group, 'ndcg@5'))} vs {sorted(by_seed(base_group, 'ndcg@5'))})")
                    continue
                parts = [describe(*compare(model_group, base_group, metric), metric) for metric in COMPARED]
                model_seeds, base_seeds = by_seed(model_group, "ndcg@5"), by_seed(base_group, "ndcg@5")
                gains = [(seed, 100 * (model_seeds[seed] - base_seeds[seed]) / base_seeds[seed])
                         for seed in sorted(set(model_seeds) & set(base_seeds))]
                print(f"- {dataset} {model} vs {base}, {depth} layers: " + "; ".join(parts)
                      + "; NDCG@5 gain per seed " + ", ".join(f"{gain:+.1f}%" for _, gain in gains))
                points += [(depth, gain) for _, gain in gains]
            if len({depth for depth, _ in points}) > 1 and len(points) > 2:
                fit = scipy_stats.linregress([depth for depth, _ in points], [gain for _, gain in points])
                print(f"  {dataset} {model}: NDCG@5 gain vs depth, slope {fit.slope:+.2f} points per layer "
                      f"(p = {fit.pvalue:.3g}, {len(points)} per-seed gains)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=os.path.join(HERE, "results"), help="folder of the stores")
    args = parser.parse_args()
    main_runs, depth_runs = records(args.results, "paper_main"), records(args.results, "paper_depth")
    scaling_runs = records(args.results, "paper_scaling")
    plain = {name: records(args.results, name) for name in PLAIN
             if os.path.exists(os.path.join(args.results, name, "runs.jsonl"))}
    print("<!-- table:paper_main -->")
    print(table(main_runs, False))
    print()
    print("<!-- table:paper_depth -->")
    print(table(depth_runs, True))
    print()
    print("<!-- table:unmasked -->")
    print(unmasked_table({"paper_main": main_runs, "paper_depth": depth_runs}))
    print()
    print("<!-- table:paper_scaling -->")
    print(scaling_table(scaling_runs))
    print()
    for name, runs in plain.items():
        print(f"<!-- table:{name} -->")
        print(table(runs, False))
        print()
    for name in searches(args.results):
        print(f"<!-- table:tune/{name} -->")
        print(search_table(args.results, name))
        print()
    print("Main table, SPRINT vs its backbone (paired over the seeds both rows have):")
    main_comparisons(main_runs)
    print()
    print("Depth sweep, SPRINT vs its backbone at each depth:")
    depth_comparisons(depth_runs, main_runs)
    print()
    print("Scaling sweep, SPRINT vs its backbone at each size:")
    scaling_comparisons(scaling_runs)
    for name, runs in plain.items():
        print()
        print(f"{PLAIN[name]}, SPRINT vs its backbone:")
        main_comparisons(runs)


if __name__ == "__main__":
    main()

"""Write a copy of a benchmark spec whose ``<model>-tuned`` entry holds the best values of a finished search.

    python benchmarks/tuned_spec.py --spec recbole_sprint/properties/benchmark/paper_main.yaml \
        --tune_dir benchmarks/results/tune/HSTUSPRINT_amazon-beauty --out /tmp/paper_main_tuned.yaml

Without such an entry, it is appended: ``{name: <class>, label: <searched label>-tuned, config: <the searched
entry's config + the best trial's searched values>}``. With one (tuned on another dataset before), the best values
go into its ``dataset_config`` for the search's dataset, so its runs on the other datasets keep their run ids;
nothing changes where its ``config`` already holds them. Either way the runs get the same run ids as the same
entry pasted into the spec by hand (the id hashes label, dataset, seed and config), so the spec in the repository
can take the printed entry and keep the stored results. The copy is written beside ``--spec`` unless ``--out``
names another file, since the spec's relative ``data_path`` is resolved against its folder first.
"""

import argparse
import json
import os
import sys

import yaml


def load_search(tune_dir):
    """``(searched label, dataset, {name: best value})`` of the finished search in ``tune_dir``."""
    with open(os.path.join(tune_dir, "search_settings.json")) as f:
        settings = json.load(f)
    best_path = os.path.join(tune_dir, "best_trial.json")
    if not os.path.isfile(best_path):
        raise SystemExit(f"--tune_dir: no best_trial.json in {tune_dir}: the search has no finished trial yet")
    with open(best_path) as f:
        best = json.load(f)
    label = settings.get("spec_model") or settings["model"]
    return label, settings["dataset"], {name: best[name] for name in settings["param_names"]}


def _label(entry):
    """A model entry's label (a plain name is its own label)."""
    return entry if isinstance(entry, str) else entry.get("label", entry["name"])


def add_tuned(spec_raw, label, dataset, values):
    """Put the searched ``values`` into ``spec_raw``'s ``<label>-tuned`` entry (see the module docstring);
    returns ``(entry, what was done)``."""
    entries = spec_raw["models"]
    base = [m if isinstance(m, dict) else {"name": m} for m in entries if _label(m) == label]
    if len(base) != 1:
        raise SystemExit(f"--spec: no single model entry labelled {label} (the search's --model)")
    tuned_label = f"{label}-tuned"
    tuned = [m for m in entries if _label(m) == tuned_label]  # a dict: no class is named "...-tuned"
    if not tuned:
        entry = {"name": base[0]["name"], "label": tuned_label, "config": {**(base[0].get("config") or {}), **values}}
        entries.append(entry)
        return entry, "added the entry"
    entry = tuned[0]
    config = entry.get("config") or {}
    if all(name in config and config[name] == value for name, value in values.items()):
        by_dataset = entry.get("dataset_config") or {}
        if by_dataset.pop(dataset, None) is not None:  # values of an earlier search on this dataset
            if not by_dataset:
                del entry["dataset_config"]
            return entry, f"dropped its dataset_config for {dataset}: its config holds the best values"
        return entry, f"its config already holds the best values of the {dataset} search"
    entry.setdefault("dataset_config", {})[dataset] = dict(values)
    return entry, f"set its dataset_config for {dataset}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="the benchmark spec the search ran under (--spec of tune)")
    parser.add_argument("--tune_dir", required=True, help="the search's --output_dir")
    parser.add_argument("--out", help="the spec to write (default: <spec>_tuned.yaml beside --spec)")
    args = parser.parse_args(argv)
    with open(args.spec) as f:
        spec_raw = yaml.safe_load(f)
    entry, done = add_tuned(spec_raw, *load_search(args.tune_dir))
    out = args.out or os.path.splitext(args.spec)[0] + "_tuned.yaml"
    with open(out, "w") as f:
        yaml.safe_dump(spec_raw, f, sort_keys=False)
    print(f"wrote {out} ({done}); the entry:\n  - " + json.dumps(entry).replace('"', ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

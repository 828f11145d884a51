"""Write a copy of a benchmark spec with one more model entry: the best weights of a finished search.

    python benchmarks/tuned_spec.py --spec recbole_sprint/properties/benchmark/paper_main.yaml \
        --tune_dir benchmarks/results/tune/HSTUSPRINT_amazon-beauty --out /tmp/paper_main_tuned.yaml

The new entry is ``{name: <class>, label: <searched label>-tuned, config: <that entry's config + the best
trial's searched values>}``, appended to ``models``. Its runs get the same run ids as the same entry added to the
spec by hand later (the id hashes label, dataset, seed and config), so the spec file in the repository can take
the printed entry and keep the stored results. The copy is written beside ``--spec`` unless ``--out`` names
another file, since the spec's relative ``data_path`` is resolved against its folder first.
"""

import argparse
import json
import os
import sys

import yaml


def best_entry(spec_raw, tune_dir):
    """The model entry (dict) for the best trial of the search in ``tune_dir``, built from ``spec_raw``."""
    with open(os.path.join(tune_dir, "search_settings.json")) as f:
        settings = json.load(f)
    best_path = os.path.join(tune_dir, "best_trial.json")
    if not os.path.isfile(best_path):
        raise SystemExit(f"--tune_dir: no best_trial.json in {tune_dir}: the search has no finished trial yet")
    with open(best_path) as f:
        best = json.load(f)
    label = settings.get("spec_model") or settings["model"]
    entries = [m if isinstance(m, dict) else {"name": m} for m in spec_raw["models"]]
    base = [m for m in entries if m.get("label", m["name"]) == label]
    if len(base) != 1:
        raise SystemExit(f"--spec: no single model entry labelled {label} (the search's --model)")
    config = dict(base[0].get("config") or {})
    config.update({name: best[name] for name in settings["param_names"]})
    return {"name": base[0]["name"], "label": f"{label}-tuned", "config": config}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="the benchmark spec the search ran under (--spec of tune)")
    parser.add_argument("--tune_dir", required=True, help="the search's --output_dir")
    parser.add_argument("--out", help="the spec to write (default: <spec>_tuned.yaml beside --spec)")
    args = parser.parse_args(argv)
    with open(args.spec) as f:
        spec_raw = yaml.safe_load(f)
    entry = best_entry(spec_raw, args.tune_dir)
    labels = [m.get("label", m["name"]) if isinstance(m, dict) else m for m in spec_raw["models"]]
    if entry["label"] in labels:
        raise SystemExit(f"--spec: already has an entry labelled {entry['label']}")
    spec_raw["models"].append(entry)
    out = args.out or os.path.splitext(args.spec)[0] + "_tuned.yaml"
    with open(out, "w") as f:
        yaml.safe_dump(spec_raw, f, sort_keys=False)
    print(f"wrote {out} with the entry:\n  - " + json.dumps(entry).replace('"', ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

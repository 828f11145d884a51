"""Scaling sweeps: the paper's model-size presets, parameter counts split into embedding and non-embedding
parameters, power-law fits and log-x plots of a metric against non-embedding parameters.

Sizes (SPRINT paper, Table 5 / spec section 4.3; H = d / 64): XXS 1x64 ... XXL 12x1536. Following Zivic et
al. (SIGIR 2024, "Scaling Sequential Recommendation Models with Transformers"), curves are drawn against the
non-embedding parameter count (item and position embedding tables excluded), and each curve gets a power
law ``y = a * x ** b`` fitted by least squares in log-log space.
"""

import math

import numpy as np


def parameter_counts(model):
    """:func:`recbole_sprint.utils.parameter_counts`, re-exported (imported when called: ``--help`` of the benchmark
    command imports this module and must not wait for torch and RecBole)."""
    from recbole_sprint.utils import parameter_counts as counts

    return counts(model)

# name -> (n_layers L, hidden size d, heads H)
SIZE_PRESETS = {
    "XXS": (1, 64, 1),
    "XS": (2, 128, 2),
    "Small": (4, 256, 4),
    "Base": (6, 512, 8),
    "Large": (8, 768, 12),
    "XL": (10, 1024, 16),
    "XXL": (12, 1536, 24),
}

#: the RecBole config keys a size preset sets
SIZE_KEYS = ("n_layers", "hidden_size", "n_heads", "inner_size")


def size_config(name):
    """RecBole config keys of a size preset: ``n_layers``, ``hidden_size``, ``n_heads`` and
    ``inner_size = 4 * hidden_size`` (the FFN width of RecBole's TransformerEncoder).

    Raises:
        ValueError: unknown preset; the message lists the presets.
    """
    if name not in SIZE_PRESETS:
        raise ValueError(f"unknown model size [{name}]; allowed: {', '.join(SIZE_PRESETS)}")
    n_layers, hidden_size, n_heads = SIZE_PRESETS[name]
    return {"n_layers": n_layers, "hidden_size": hidden_size, "n_heads": n_heads, "inner_size": 4 * hidden_size}


def fit_power_law(x, y):
    """Least-squares fit of ``y = a * x ** b`` on ``log y = log a + b log x``.

    Returns:
        dict ``a``, ``b``, ``r2`` (of the log-log fit); ``None`` with fewer than two distinct positive x or
        a non-positive y.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 2 or np.any(x <= 0) or np.any(y <= 0) or len(set(x.tolist())) < 2:
        return None
    lx, ly = np.log(x), np.log(y)
    b, log_a = np.polyfit(lx, ly, 1)
    residual = ly - (log_a + b * lx)
    total = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    return {"a": float(math.exp(log_a)), "b": float(b), "r2": float(r2)}


def plot_curves(curves, metric, path, title=None):
    """Write a PNG of ``metric`` against non-embedding parameters (log x), one line per curve, with the
    fitted power law dashed.

    Args:
        curves: list of dicts ``label``, ``x`` (non-embedding params), ``y`` (means), ``yerr`` (stds),
            ``fit`` (:func:`fit_power_law` result or None).
        metric: y-axis label.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, curve in enumerate(curves):
        color = f"C{i}"
        ax.errorbar(curve["x"], curve["y"], yerr=curve["yerr"], marker="o", color=color, capsize=3,
                    label=curve["label"])
        fit = curve["fit"]
        if fit is not None:
            xs = np.geomspace(min(curve["x"]), max(curve["x"]), 50)
            ax.plot(xs, fit["a"] * xs ** fit["b"], linestyle="--", color=color, alpha=0.7,
                    label=f"fit {fit['a']:.3g}·N^{fit['b']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve_key(variant):
    """The part of a variant that is not model size: runs sharing it (and model, dataset) form one curve."""
    return {k: v for k, v in variant.items() if k != "size" and k not in SIZE_KEYS}


def scaling_points(records, metric):
    """Points of every scaling curve: one per (dataset, model, curve, size), the metric averaged over seeds.

    Returns:
        list of dicts ``dataset``, ``model``, ``curve``, ``variant``, ``n_params``, ``n_params_embedding``,
        ``n_params_non_embedding``, ``mean``, ``std``, ``n``, sorted by non-embedding parameters.
    """
    from recbole_sprint.benchmark.spec import variant_label
    from recbole_sprint.benchmark.stats import mean_std

    groups = {}
    for r in records:
        if metric in r["test_result"]:
            groups.setdefault((r["dataset"], r["model"], r["variant_label"]), []).append(r)
    points = []
    for (dataset, model, label), runs in groups.items():
        mean, std = mean_std([run["test_result"][metric] for run in runs])
        points.append({
            "dataset": dataset,
            "model": model,
            "curve": variant_label(curve_key(runs[0]["variant"])),
            "variant": label,
            "n_params": runs[0]["n_params"],
            "n_params_embedding": runs[0]["n_params_embedding"],
            "n_params_non_embedding": runs[0]["n_params_non_embedding"],
            "mean": mean,
            "std": std,
            "n": len(runs),
        })
    return sorted(points, key=lambda p: (p["dataset"], p["model"], p["curve"], p["n_params_non_embedding"]))


def write_scaling(records, datasets, metrics, output_dir):
    """For each dataset and metric, a PNG (``scaling_<dataset>_<metric>.png``) of the metric against
    non-embedding parameters with a power law fitted per curve, and one CSV (``scaling.csv``) holding every
    plotted point and fit: the plots' data source.

    Returns:
        list of the PNG paths.
    """
    import csv
    import os

    fields = ["dataset", "metric", "model", "curve", "variant", "n_params", "n_params_embedding",
              "n_params_non_embedding", "mean", "std", "n", "fit_a", "fit_b", "fit_r2"]
    rows, pngs = [], []
    for dataset in datasets:
        for metric in metrics:
            points = [p for p in scaling_points(records, metric) if p["dataset"] == dataset]
            if not points:
                continue
            curves = []
            for key in dict.fromkeys((p["model"], p["curve"]) for p in points):
                curve_points = [p for p in points if (p["model"], p["curve"]) == key]
                fit = fit_power_law([p["n_params_non_embedding"] for p in curve_points],
                                    [p["mean"] for p in curve_points])
                curves.append({
                    "label": key[0] + (f" ({key[1]})" if key[1] else ""),
                    "x": [p["n_params_non_embedding"] for p in curve_points],
                    "y": [p["mean"] for p in curve_points],
                    "yerr": [p["std"] for p in curve_points],
                    "fit": fit,
                })
                for p in curve_points:
                    rows.append({**p, "metric": metric, "fit_a": fit["a"] if fit else "",
                                 "fit_b": fit["b"] if fit else "", "fit_r2": fit["r2"] if fit else ""})
            safe = f"{dataset}_{metric}".replace("@", "_at_").replace("/", "_")
            path = os.path.join(output_dir, f"scaling_{safe}.png")
            plot_curves(curves, metric, path, title=f"{dataset}: {metric} vs non-embedding parameters")
            pngs.append(path)
    with open(os.path.join(output_dir, "scaling.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row[k] for k in fields} for row in rows)
    return pngs

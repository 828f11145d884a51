"""Benchmark tables from stored runs: rows = models (x size / sweep variant), columns = dataset x metric,
cells = mean ± std over seeds, the best mean of each column in bold (smaller is better for the metrics in
``recbole.evaluator.register.smaller_metrics``, e.g. AveragePopularity, ARP), and under each SPRINT model the
gain over its own backbone (``XSPRINT`` -> ``X``, same variant) with a paired t-test across seeds.

Gains are positive when the SPRINT model is better: relative (%) by default, absolute in percentage points
for the metrics listed in ``table.absolute_gain`` (the paper's convention for Fair). Written as Markdown,
LaTeX (booktabs) and CSV (full precision, one row per model).
"""

import csv
import math
from dataclasses import dataclass, field

import numpy as np

from recbole_sprint.benchmark.stats import mean_std, paired_test, relative_gain

SPRINT_SUFFIX = "SPRINT"


def backbone_of(model):
    """``SASRecSPRINT`` -> ``SASRec``, also for a labelled variant (``SASRecSPRINT-tuned`` -> ``SASRec``), and a
    label ``X-SPRINT`` (``X-SPRINT-tuned``) -> ``X`` (``SASRec++-SPRINT`` -> ``SASRec++``); ``None`` for models that
    are not SPRINT variants."""
    name, _, rest = model.partition("-")  # RecBole's model names have no "-"
    if name.endswith(SPRINT_SUFFIX) and len(name) > len(SPRINT_SUFFIX):
        return name[: -len(SPRINT_SUFFIX)]
    if name and rest.split("-", 1)[0] == SPRINT_SUFFIX:
        return name
    return None


def smaller_is_better(metric):
    """``"averagepopularity@10"`` -> True (RecBole's ``smaller_metrics``, plugin metrics included)."""
    from recbole.evaluator.register import smaller_metrics

    return metric.split("@")[0].lower() in smaller_metrics


@dataclass
class Stat:
    mean: float
    std: float
    n: int
    by_seed: dict


@dataclass
class Row:
    model: str
    variant_label: str
    stats: dict  # (dataset, metric) -> Stat
    best: set = field(default_factory=set)  # columns where this row is best
    backbone: str = None
    gains: dict = field(default_factory=dict)  # (dataset, metric) -> dict gain, p_value, n, absolute

    @property
    def label(self):
        return f"{self.model} [{self.variant_label}]" if self.variant_label else self.model


@dataclass
class Table:
    datasets: list
    metrics: list
    rows: list
    alpha: float
    absolute_gain: set

    @property
    def columns(self):
        return [(d, m) for d in self.datasets for m in self.metrics]


def build_table(records, datasets, models, variant_labels, metrics=None, absolute_gain=(), alpha=0.05):
    """Aggregate stored run records into a :class:`Table`.

    Args:
        records: store records (dicts with model, dataset, variant_label, seed, test_result).
        datasets, models, variant_labels: row and column order.
        metrics: the metric columns (result keys such as ``"ndcg@10"``); default: every key of the first
            record's test_result.
        absolute_gain: metric names (with or without ``@k``) whose gain is reported in percentage points.
        alpha: significance level of the paired test.
    """
    if metrics is None:
        metrics = list(records[0]["test_result"]) if records else []
    metrics = [m.lower() for m in metrics]
    absolute = {a.lower() for a in absolute_gain}
    values = {}
    for r in records:
        for metric in metrics:
            if metric in r["test_result"]:
                key = (r["model"], r["variant_label"], r["dataset"], metric)
                values.setdefault(key, {})[r["seed"]] = r["test_result"][metric]
    rows = []
    for model in models:
        for variant in variant_labels:
            stats = {}
            for dataset in datasets:
                for metric in metrics:
                    by_seed = values.get((model, variant, dataset, metric))
                    if by_seed:
                        mean, std = mean_std([by_seed[s] for s in sorted(by_seed)])
                        stats[(dataset, metric)] = Stat(mean, std, len(by_seed), by_seed)
            if stats:
                rows.append(Row(model, variant, stats))
    table = Table(list(datasets), metrics, rows, alpha, absolute)
    _mark_best(table)
    _add_gains(table)
    return table


def _mark_best(table):
    for column in table.columns:
        means = [row.stats[column].mean for row in table.rows if column in row.stats]
        if not means:
            continue
        best = min(means) if smaller_is_better(column[1]) else max(means)
        for row in table.rows:
            if column in row.stats and row.stats[column].mean == best:
                row.best.add(column)


def _add_gains(table):
    by_key = {(row.model, row.variant_label): row for row in table.rows}
    for row in table.rows:
        base = by_key.get((backbone_of(row.model), row.variant_label))
        if base is None:
            continue
        row.backbone = base.model
        for column in table.columns:
            if column in row.stats and column in base.stats:
                metric = column[1]
                is_absolute = metric in table.absolute_gain or metric.split("@")[0] in table.absolute_gain
                mine, theirs = row.stats[column].by_seed, base.stats[column].by_seed
                shared = sorted(set(mine) & set(theirs))
                if shared and set(mine) != set(theirs):  # the gain over the seeds the test pairs, as the test
                    mean, base_mean = (float(np.mean([values[s] for s in shared])) for values in (mine, theirs))
                else:  # the same seeds (the means shown), or none shared (marked "0 shared seeds")
                    mean, base_mean = row.stats[column].mean, base.stats[column].mean
                gain = relative_gain(mean, base_mean, smaller_is_better=smaller_is_better(metric),
                                     absolute=is_absolute)
                test = paired_test(mine, theirs)
                row.gains[column] = {"gain": gain, "p_value": test["p_value"], "n": test["n"], "absolute": is_absolute}


# ---------------------------------------------------------------------------------------------- formatting
def _decimals(x):
    return 2 if abs(x) >= 10 else 4


def format_number(x, decimals=None):
    """4 decimals (2 from 10 upwards, e.g. average popularity), or ``decimals``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{_decimals(x) if decimals is None else decimals}f}"


def format_stat(stat, pm=" ± "):
    """``mean ± std`` with the std at the mean's precision; the mean alone for a single seed."""
    text = format_number(stat.mean)
    return f"{text}{pm}{format_number(stat.std, _decimals(stat.mean))}" if stat.n > 1 else text


def format_gain(gain, alpha):
    unit = "pp" if gain["absolute"] else "%"
    value = "n/a" if math.isnan(gain["gain"]) else f"{gain['gain']:+.2f}{unit}"
    p = gain["p_value"]
    if math.isnan(p) and gain["n"] < 2:  # no test without two seeds that both rows ran
        return f"{value} (p=n/a: {gain['n']} shared seed{'' if gain['n'] == 1 else 's'})"
    if math.isnan(p):
        return f"{value} (p=n/a)"
    return f"{value} (p={p:.3f}){'*' if p < alpha else ''}"


def _arrow(metric, latex=False):
    down = smaller_is_better(metric)
    if latex:
        return r"$\downarrow$" if down else r"$\uparrow$"
    return "↓" if down else "↑"


def _footnote(table):
    return (f"mean ± std (sample, ddof=1) over seeds; bold = best per column (↑ larger / ↓ smaller is better). "
            f"Gain rows: SPRINT model vs its backbone, positive = better (% relative, pp absolute); "
            f"p = paired t-test across seeds, * p < {table.alpha}.")


def to_markdown(table):
    header = ["Model"] + [f"{d} {m} {_arrow(m)}" for d, m in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [row.label]
        for column in table.columns:
            if column not in row.stats:
                cells.append("–")
                continue
            text = format_stat(row.stats[column])
            cells.append(f"**{text}**" if column in row.best else text)
        lines.append("| " + " | ".join(cells) + " |")
        if row.backbone:
            gains = [format_gain(row.gains[c], table.alpha) if c in row.gains else "–" for c in table.columns]
            lines.append("| " + " | ".join([f"↳ gain vs {row.backbone}"] + gains) + " |")
    return "\n".join(lines) + "\n\n" + _footnote(table) + "\n"


def latex_escape(text):
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                          ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text


def to_latex(table):
    n = len(table.metrics)
    spec = "l" + " ".join(["c" * n] * len(table.datasets))
    lines = [r"\begin{tabular}{" + spec + "}", r"\toprule"]
    groups = [rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(d)}}}" for d in table.datasets]
    lines.append(" & " + " & ".join(groups) + r" \\")
    lines.append(" ".join(rf"\cmidrule(lr){{{2 + i * n}-{1 + (i + 1) * n}}}" for i in range(len(table.datasets))))
    lines.append("Model & " + " & ".join(f"{latex_escape(m)} {_arrow(m, latex=True)}" for _, m in table.columns)
                 + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        cells = [latex_escape(row.label)]
        for column in table.columns:
            if column not in row.stats:
                cells.append("--")
                continue
            text = format_stat(row.stats[column], pm=r" $\pm$ ")
            cells.append(rf"\textbf{{{text}}}" if column in row.best else text)
        lines.append(" & ".join(cells) + r" \\")
        if row.backbone:
            gains = [latex_escape(format_gain(row.gains[c], table.alpha)) if c in row.gains else "--"
                     for c in table.columns]
            lines.append(" & ".join([rf"\quad gain vs {latex_escape(row.backbone)}"] + gains) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_rows(table):
    """Header and rows of the CSV: one row per model, five columns per (dataset, metric)."""
    header = ["model", "variant", "backbone"]
    for d, m in table.columns:
        header += [f"{d}/{m}/{s}" for s in ("mean", "std", "n", "gain", "p_value")]
    rows = []
    for row in table.rows:
        values = [row.model, row.variant_label, row.backbone or ""]
        for column in table.columns:
            stat = row.stats.get(column)
            gain = row.gains.get(column)
            values += [stat.mean if stat else "", stat.std if stat else "", stat.n if stat else "",
                       gain["gain"] if gain else "", gain["p_value"] if gain else ""]
        rows.append(values)
    return header, rows


def write_tables(table, prefix, markdown_note=None):
    """Write ``<prefix>.md`` (``markdown_note`` above the table, if given), ``<prefix>.tex`` and ``<prefix>.csv``;
    returns the three paths."""
    paths = {"markdown": prefix + ".md", "latex": prefix + ".tex", "csv": prefix + ".csv"}
    with open(paths["markdown"], "w") as f:
        f.write((markdown_note + "\n\n" if markdown_note else "") + to_markdown(table))
    with open(paths["latex"], "w") as f:
        f.write(to_latex(table))
    header, rows = csv_rows(table)
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return paths

"""Render the tables and scaling plots of a spec from its results store."""

import os

from recbole_sprint.benchmark.scaling import write_scaling
from recbole_sprint.benchmark.spec import variant_label
from recbole_sprint.benchmark.tables import build_table, write_tables


def render(spec, records, output_dir):
    """Write ``table.{md,tex,csv}`` and, if the spec has a ``scaling`` section, ``scaling_*.png`` and
    ``scaling.csv`` into ``output_dir``. Returns a dict of the written paths."""
    os.makedirs(output_dir, exist_ok=True)
    table_options = spec.table or {}
    table = build_table(
        records,
        datasets=[name for name, _, _ in spec.datasets],
        models=[name for name, _ in spec.models],
        variant_labels=[variant_label(v) for v in spec.variants()],
        metrics=table_options.get("metrics"),
        absolute_gain=table_options.get("absolute_gain") or (),
        alpha=float(table_options.get("alpha", 0.05)),
    )
    paths = write_tables(table, os.path.join(output_dir, "table"))
    if spec.scaling is not None:
        metrics = [m.lower() for m in (spec.scaling.get("metrics") or table.metrics[:1])]
        paths["plots"] = write_scaling(records, [name for name, _, _ in spec.datasets], metrics, output_dir)
        paths["scaling_csv"] = os.path.join(output_dir, "scaling.csv")
    return paths

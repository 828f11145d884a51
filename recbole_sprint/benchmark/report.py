"""Render the tables and scaling plots of a spec from its results store."""

import os

from recbole_sprint.benchmark.scaling import write_scaling
from recbole_sprint.benchmark.spec import variant_label
from recbole_sprint.benchmark.tables import build_table, write_tables


def unmasked_runs(records):
    """The records whose metrics ranked items of the user's own history (``eval_exclude_history`` off, or stored
    before the option existed: no key)."""
    return [record for record in records if not record.get("eval_exclude_history", False)]


def unmasked_warning(n_unmasked, n_records):
    return (
        f"> **Not comparable:** {n_unmasked} of {n_records} runs in this table were evaluated without history "
        "masking (`eval_exclude_history` off, or stored before it existed): their rankings may put items the user "
        "already consumed first, so HR@1 and the long-tail metrics describe the user's past. Retrain them with "
        "`--rerun_before <now>` (same run ids; the newer record wins)."
    )


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
    unmasked = unmasked_runs(records)
    note = unmasked_warning(len(unmasked), len(records)) if unmasked else None
    paths = write_tables(table, os.path.join(output_dir, "table"), markdown_note=note)
    if spec.scaling is not None:
        metrics = [m.lower() for m in (spec.scaling.get("metrics") or table.metrics[:1])]
        paths["plots"] = write_scaling(records, [name for name, _, _ in spec.datasets], metrics, output_dir)
        paths["scaling_csv"] = os.path.join(output_dir, "scaling.csv")
    return paths

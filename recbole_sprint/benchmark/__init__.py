"""recbole_sprint.benchmark: benchmark grids, paper tables and scaling sweeps.

``python -m recbole_sprint.benchmark SPEC.yaml [--output_dir DIR] [--parallel] [--address ADDR]``

* :mod:`~recbole_sprint.benchmark.spec`: load and validate a YAML spec, expand it into a grid of runs;
* :mod:`~recbole_sprint.benchmark.runner`: run the grid (sequentially or as Ray tasks), resumable;
* :mod:`~recbole_sprint.benchmark.store`: the append-only JSONL results store;
* :mod:`~recbole_sprint.benchmark.tables`: Markdown / LaTeX (booktabs) / CSV tables;
* :mod:`~recbole_sprint.benchmark.stats`: mean ± std, gain over the backbone, paired t-test;
* :mod:`~recbole_sprint.benchmark.scaling`: size presets, parameter counts, power-law fits, plots.
"""

import os

from recbole_sprint.benchmark.spec import SpecError, load_spec, parse_spec


def default_output_dir(spec):
    return os.path.join("outputs", "benchmark", spec.name)


def run_benchmark(spec, output_dir=None, parallel=False, address=None, show_progress=True, keep_checkpoints=False,
                  shard=None, models=None, datasets=None, rerun_before=None):
    """Run every unfinished run of ``spec`` (or of the cells that ``models`` / ``datasets`` select, see
    :func:`~recbole_sprint.benchmark.spec.select_cells`), then render its tables (and plots) from every stored run
    of the spec.

    Returns:
        dict with ``records`` (the grid's stored runs), ``n_ran`` (runs trained by this call) and ``paths``.
    """
    from recbole_sprint.benchmark.report import render
    from recbole_sprint.benchmark.runner import run_grid

    output_dir = output_dir or default_output_dir(spec)
    records, n_ran = run_grid(spec, output_dir, parallel=parallel, address=address, show_progress=show_progress,
                              keep_checkpoints=keep_checkpoints, shard=shard, models=models, datasets=datasets,
                              rerun_before=rerun_before)
    return {"records": records, "n_ran": n_ran, "paths": render(spec, records, output_dir)}


__all__ = ["SpecError", "load_spec", "parse_spec", "run_benchmark", "default_output_dir"]

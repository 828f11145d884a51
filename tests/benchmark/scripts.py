"""Import a script of ``benchmarks/`` (scripts, not a package) as a module, for the tests of each."""

import importlib.util
import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")


def load_benchmark_script(name):
    """``benchmarks/<name>.py`` as a fresh module; the folder goes on ``sys.path`` first, since a script may import
    its neighbours (equal_time.py imports speed.py)."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

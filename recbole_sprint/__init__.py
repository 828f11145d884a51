"""recbole_sprint: SPRINT for transformer recommenders, as a RecBole plugin.

Importing the package installs the compatibility shims of :mod:`recbole_sprint.compat` (process-wide) and
registers the plugin's metrics in RecBole's metric registry, so that every Config built afterwards (Ray
workers included) knows them.
"""

from recbole_sprint import compat

compat.apply()

from recbole_sprint import evaluator  # noqa: E402,F401  (registers the plugin metrics)

__version__ = "0.1.0"

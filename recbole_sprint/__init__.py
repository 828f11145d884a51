"""recbole_sprint: SPRINT for transformer recommenders, as a RecBole plugin.

Importing the package installs the compatibility shims of :mod:`recbole_sprint.compat` (process-wide) and
registers the plugin's metrics in RecBole's metric registry, so that every Config built afterwards (Ray
workers included) knows them. The one exception is a process started only to print the ``--help`` of one of the
plugin's commands (:func:`recbole_sprint.cli.only_help`): it answers without importing torch and RecBole.
"""

from recbole_sprint.cli import only_help as _only_help  # standard library only

if not _only_help():
    from recbole_sprint import compat

    compat.apply()

    from recbole_sprint import evaluator  # noqa: F401  (registers the plugin metrics)

__version__ = "0.1.0"

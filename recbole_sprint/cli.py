"""How the command lines (``run_recbole_sprint.py``, ``python -m recbole_sprint.benchmark``, ``python -m
recbole_sprint.tune``) report a user error: one line, ``error: <message>``, on stderr and exit status 2; the
Python traceback only with ``--debug``.

User errors are what a wrong input raises: the plugin's and RecBole's config validation (``ValueError``, and
RecBole's ``NotImplementedError`` for an unknown metric), a missing file (``FileNotFoundError``), a dataset that
is not there (:class:`~recbole_sprint.data.DatasetUnavailableError`), a malformed atomic file, spec, ``.hyper``
file, results store or checkpoint (all ``ValueError`` subclasses). Anything else is a bug and keeps its
traceback.
"""

import sys

DEBUG_HELP = "show the Python traceback of an error (without it: one line 'error: <message>', exit status 2)"


def user_errors():
    """The exception classes reported as one line."""
    import yaml

    from recbole_sprint.data import DatasetUnavailableError

    return ValueError, FileNotFoundError, NotImplementedError, yaml.YAMLError, DatasetUnavailableError


def one_line(error):
    """``str(error)`` on one line (a multi-line message joined with spaces)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


def report(error):
    """Print ``error: <message>`` on stderr; returns the exit status 2."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    return 2


def one_line_data_warnings():
    """Show the data checks' warnings (:class:`~recbole_sprint.data.checks.DataWarning`) as ``warning: <message>``
    lines, without the Python source line that the default format adds."""
    import warnings

    from recbole_sprint.data.checks import DataWarning

    original = warnings.formatwarning
    if getattr(original, "recbole_sprint", False):
        return

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, DataWarning):
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)

    formatwarning.recbole_sprint = True
    warnings.formatwarning = formatwarning


def pop_debug(argv):
    """``(argv without --debug, whether it was there)``: RecBole's Config reads ``sys.argv`` itself and would warn
    about a flag it does not know."""
    return [arg for arg in argv if arg != "--debug"], "--debug" in argv

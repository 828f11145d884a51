"""How the command lines (``run_recbole_sprint.py``, ``python -m recbole_sprint.benchmark``, ``python -m
recbole_sprint.tune``) report a user error: one line, ``error: <message>``, on stderr and exit status 2; the
Python traceback only with ``--debug``.

User errors are what a wrong input raises: the plugin's and RecBole's config validation (``ValueError``, and
RecBole's ``NotImplementedError`` for an unknown metric), a missing file (``FileNotFoundError``), a dataset that
is not there (:class:`~recbole_sprint.data.DatasetUnavailableError`), a malformed atomic file, spec, ``.hyper``
file, results store or checkpoint (all ``ValueError`` subclasses). Anything else is a bug and keeps its
traceback.
"""

import argparse
import importlib.util
import os
import re
import sys
import textwrap

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


# --help ----------------------------------------------------------------------------------------------------------
# ``--help`` answers before the heavy imports: ``import recbole_sprint`` skips the shims (torch, RecBole) when the
# process was started only to print one of these commands' help (:func:`only_help`), and the model list is read
# from the model packages' ``__init__.py`` files instead of importing them.
COMMANDS = ("run_recbole_sprint.py", "recbole_sprint.benchmark", "recbole_sprint.tune")
HELP_FLAGS = ("-h", "--help")
_PYTHON_OPTIONS_WITH_VALUE = ("-W", "-X", "-Q")
# RecBole's model packages, in the order of its documentation
RECBOLE_MODEL_PACKAGES = (
    ("general", "general_recommender"),
    ("sequential", "sequential_recommender"),
    ("context-aware", "context_aware_recommender"),
    ("knowledge-aware", "knowledge_aware_recommender"),
)


def only_help(orig_argv=None):
    """Whether this Python process was started only to print the ``--help`` of one of :data:`COMMANDS`
    (``python run_recbole_sprint.py --help``, ``python -m recbole_sprint.tune -h``, ...), read from the
    interpreter's own command line (``sys.orig_argv``), so that ``import recbole_sprint`` can leave out the heavy
    imports; any other process (a script, ``-c``, pytest, another ``-m`` module) gets them as always."""
    argv = list(getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv)
    command, rest, i = None, [], 1
    while i < len(argv):
        arg = argv[i]
        if arg in _PYTHON_OPTIONS_WITH_VALUE:
            i += 2
            continue
        if arg == "-m" and i + 1 < len(argv):
            command, rest = argv[i + 1], argv[i + 2:]
        elif arg.startswith("-m") and len(arg) > 2:
            command, rest = arg[2:], argv[i + 1:]
        elif arg == "-c" or arg == "-":
            return False
        elif not arg.startswith("-"):
            command, rest = os.path.basename(arg), argv[i + 1:]
        else:
            i += 1
            continue
        break
    if command is None:
        return False
    command = command[: -len(".__main__")] if command.endswith(".__main__") else command
    rest = rest[: rest.index("--")] if "--" in rest else rest
    return command in COMMANDS and any(arg in HELP_FLAGS for arg in rest)


def _package_dir(name):
    spec = importlib.util.find_spec(name)  # finds a top-level package without importing it
    return os.path.dirname(spec.origin) if spec is not None and spec.origin else None


def _imported_names(init_file):
    """Class names that a model package's ``__init__.py`` imports (``from x.y import Name``), in order."""
    try:
        with open(init_file) as handle:
            text = handle.read()
    except OSError:
        return []
    names = []
    for match in re.finditer(r"^from[ \t]+\S+[ \t]+import[ \t]+(\([^)]*\)|[^\n]+)", text, flags=re.MULTILINE):
        imported = re.sub(r"#[^\n]*", "", match.group(1)).strip("() \t\n")
        names += [name.split(" as ")[-1].strip() for name in imported.split(",") if name.strip()]
    return names


def available_models():
    """``[(group, [model names])]``: the plugin's models, then RecBole's by kind (no import of either)."""
    plugin = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "sequential_recommender", "__init__.py")
    groups = [("recbole_sprint", _imported_names(plugin))]
    recbole_dir = _package_dir("recbole")
    for kind, package in RECBOLE_MODEL_PACKAGES:
        if recbole_dir is not None:
            names = _imported_names(os.path.join(recbole_dir, "model", package, "__init__.py"))
            if names:
                groups.append((f"RecBole {kind}", names))
    return groups


def models_epilog(width=100):
    """The "models:" paragraph of a command's ``--help``."""
    lines = ["models (--model; names are case-sensitive):"]
    for group, names in available_models():
        lines += textwrap.wrap(", ".join(names), width=width, initial_indent=f"  {group}: ",
                               subsequent_indent="    ")
    return "\n".join(lines)


def plain(doc):
    """A docstring as help text: ``code`` and :role:`~a.b.name` without their reST markup."""
    doc = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", doc)
    return re.sub(r"``([^`]+)``", r"\1", doc)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and epilog as written (line breaks kept); an option with a default value shows it (unless its
    help says it already; a flag's False and an unset None are no values)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or "default" in text
                or action.option_strings == [] or isinstance(action, argparse._HelpAction)):
            return text
        return f"{text} (default: {default})"

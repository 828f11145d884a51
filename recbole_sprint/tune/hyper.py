"""Search spaces in RecBole's ``.hyper`` format (``run_hyper.py --params_file``).

One parameter per line, ``<name> <distribution> <arguments>``; blank lines and ``#`` comments are ignored::

    learning_rate      loguniform -9.21,-4.61   # natural-log bounds: exp(-9.21)=1e-4 .. exp(-4.61)=1e-2
    dropout_prob       uniform 0.0,0.5          # "0.0 0.5" is accepted too
    hidden_size        choice [32,64,128]       # any Python literal list (values may be lists)
    n_layers           randint 1,5              # integers 1..4 (upper bound exclusive, as hyperopt and Ray)
    sprint_attn_weight quniform 0,10,2.5        # round(uniform(0, 10) / 2.5) * 2.5 (bounds: multiples of q)
    n_heads            grid [1,2,4]             # every value, in every sample (Ray's grid_search)

``loguniform`` keeps RecBole's (hyperopt's) meaning: the bounds are the NATURAL LOGARITHMS of the value
range, and the value ``exp(u)``, ``u ~ uniform(low, high)``, is log-uniformly distributed on
``[exp(low), exp(high)]``. :func:`recbole_sprint.tune.search.ray_search_space` hands Ray the exponentiated
bounds (``tune.loguniform(exp(low), exp(high))``: the same distribution), so one ``.hyper`` file means the
same thing under RecBole's HyperTuning and under this package; the local backend
(:func:`recbole_sprint.tune.local.local_trials`) draws the trials Ray would draw. ``randint``, ``grid`` and the space separator
are this package's additions; RecBole's own parser knows ``choice``, ``uniform``, ``quniform``, ``loguniform``.

This module does not import Ray.
"""

import ast
import math
import os
from dataclasses import dataclass

DISTRIBUTIONS = {
    "choice": "choice [v1,v2,...]",
    "grid": "grid [v1,v2,...]",
    "uniform": "uniform low,high",
    "quniform": "quniform low,high,q",
    "loguniform": "loguniform ln_low,ln_high",
    "randint": "randint low,high",
}


class HyperFileError(ValueError):
    """A ``.hyper`` file that cannot be parsed, or names a parameter the model's config does not know."""


@dataclass(frozen=True)
class HyperParam:
    """One line of a ``.hyper`` file.

    ``args`` is, by ``distribution``: ``choice``/``grid``: the tuple of values; ``uniform``: ``(low, high)``;
    ``quniform``: ``(low, high, q)``; ``loguniform``: ``(ln_low, ln_high)`` (natural-log bounds, as written);
    ``randint``: ``(low, high)`` ints, high exclusive.
    """

    name: str
    distribution: str
    args: tuple
    source: str = ""  # "file:line", for error messages


def _numbers(text, count, where, integer=False):
    parts = text.replace(",", " ").split()
    if len(parts) != count:
        raise HyperFileError(f"{where}: expected {count} numbers, got {len(parts)} in '{text}'")
    try:
        if integer:
            return tuple(int(p) for p in parts)
        return tuple(float(p) for p in parts)
    except ValueError:
        kind = "integers" if integer else "numbers"
        raise HyperFileError(f"{where}: expected {count} {kind}, got '{text}'") from None


def parse_hyper_line(line, where="<line>"):
    """Parse one line; ``None`` for a blank line or a comment.

    Raises:
        HyperFileError: the message names ``where`` and the allowed forms.
    """
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    parts = text.split(None, 2)
    allowed = "; ".join(f"'<name> {form}'" for form in DISTRIBUTIONS.values())
    if len(parts) < 3:
        raise HyperFileError(
            f"{where}: malformed line '{text}': expected '<name> <distribution> <arguments>', one of {allowed}"
        )
    name, distribution, rest = parts
    if distribution not in DISTRIBUTIONS:
        raise HyperFileError(
            f"{where}: unknown distribution [{distribution}] for [{name}]; allowed: {', '.join(DISTRIBUTIONS)}"
        )
    if distribution in ("choice", "grid"):
        try:
            values = ast.literal_eval(rest)
        except (ValueError, SyntaxError):
            raise HyperFileError(f"{where}: {distribution} needs a Python list literal, got '{rest}'") from None
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise HyperFileError(f"{where}: {distribution} needs a non-empty list, got '{rest}'")
        return HyperParam(name, distribution, tuple(values), where)
    if distribution == "quniform":
        low, high, q = _numbers(rest, 3, where)
        if q <= 0:
            raise HyperFileError(f"{where}: quniform step q must be > 0, got {q}")
        if not all(math.isclose(bound / q, round(bound / q)) for bound in (low, high)):  # Ray's rule
            raise HyperFileError(f"{where}: quniform bounds must be multiples of q, got low={low}, high={high}, q={q}")
        args = (low, high, q)
    elif distribution == "randint":
        args = low, high = _numbers(rest, 2, where, integer=True)
    else:  # uniform, loguniform
        args = low, high = _numbers(rest, 2, where)
    if not low < high:
        raise HyperFileError(f"{where}: {distribution} needs low < high, got low={low}, high={high}")
    return HyperParam(name, distribution, args, where)


def parse_hyper_file(path):
    """All parameters of a ``.hyper`` file, in file order.

    Raises:
        HyperFileError: a malformed line, a parameter given twice, or a file without parameters.
        FileNotFoundError: no such file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--params_file: no such file: {path}")
    params = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            param = parse_hyper_line(line, where=f"{path}:{number}")
            if param is None:
                continue
            if any(p.name == param.name for p in params):
                raise HyperFileError(f"{param.source}: parameter [{param.name}] is given twice")
            params.append(param)
    if not params:
        raise HyperFileError(f"{path}: no parameters to search")
    return params


def check_names(params, known_keys, context):
    """Every searched name must be a key of the model's configuration (``context`` names that config).

    Raises:
        HyperFileError: naming the unknown parameter, its line and the closest known keys.
    """
    from recbole_sprint.config.checks import did_you_mean  # the same hint as for a misspelled --key=value

    known = set(known_keys)
    for param in params:
        if param.name not in known:
            hint = did_you_mean(param.name, known)
            raise HyperFileError(
                f"{param.source}: unknown parameter [{param.name}]: not a configuration key of {context} "
                f"(overall, dataset and model yaml){hint}"
            )

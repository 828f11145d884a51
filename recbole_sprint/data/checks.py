"""Checks of RecBole's atomic files as they load (installed by compat shim 15): data is never silently changed.

* :func:`check_header`: every column of a file's first line is ``<name>:<type>`` with one of RecBole's types;
* :func:`explain_load_error`: a value pandas cannot convert (e.g. a timestamp ``yesterday`` in a float column)
  names the file, the column, the line and the value;
* :func:`check_interactions`, on the interactions as read, before RecBole filters, fills or remaps anything:

  - the order field (``TIME_FIELD``, by which sequential models, and ``eval_args: {order: TO}``, order each
    user's interactions) must be in the file and finite in every row: RecBole would fill a missing value with
    the column mean (``Dataset._fill_nan``) and silently move that interaction within its user's history;
  - rows with a missing user or item id (RecBole drops them) and duplicate (user, item, time) rows (they train
    as separate interactions) give a :class:`DataWarning` with their counts.
"""

import os
import warnings

import numpy as np
from recbole.utils import FeatureType, ModelType

FEATURE_TYPES = [ftype.value for ftype in FeatureType]
SHOWN_LINES = 5  # line numbers quoted in a message


class DataFileError(ValueError):
    """An atomic file that cannot be used as it is; the message names the file and what to fix."""


class DataWarning(UserWarning):
    """Rows of an atomic file that RecBole drops or keeps twice."""


def _lines(rows):
    """``"line 7"`` / ``"lines 2, 7, 9, ..."``: file line numbers (the header is line 1) of 0-based rows."""
    numbers = [str(int(row) + 2) for row in list(rows)[:SHOWN_LINES]]
    more = ", ..." if len(rows) > SHOWN_LINES else ""
    return ("line " if len(rows) == 1 else "lines ") + ", ".join(numbers) + more


def check_header(dataset, filepath):
    """``DataFileError`` unless every column of ``filepath``'s header is ``<name>:<type>`` with a RecBole type."""
    config = dataset.config
    with open(filepath, "r", encoding=config["encoding"]) as f:
        head = f.readline().rstrip("\r\n")
    separator = config["field_separator"]
    for number, column in enumerate(head.split(separator), start=1):
        parts = column.split(":")
        if len(parts) != 2 or not parts[0]:
            raise DataFileError(
                f"{filepath}: malformed header (line 1): column {number} is {column!r}, not '<name>:<type>' "
                f"(types: {', '.join(FEATURE_TYPES)}; columns separated by field_separator {separator!r})"
            )
        if parts[1] not in FEATURE_TYPES:
            raise DataFileError(
                f"{filepath}: header (line 1): column {number} '{parts[0]}' has unknown type [{parts[1]}]; "
                f"RecBole's types: {', '.join(FEATURE_TYPES)}"
            )


def explain_load_error(dataset, filepath, error):
    """A :class:`DataFileError` for RecBole's/pandas' ``ValueError`` while reading ``filepath``: the float column
    whose value is not a number, its line and value when they can be found, else the original message."""
    import pandas as pd

    config = dataset.config
    try:
        frame = pd.read_csv(filepath, delimiter=config["field_separator"], dtype=str, encoding=config["encoding"],
                            engine="python", keep_default_na=True)
    except Exception:  # noqa: BLE001  (the file is already known to be broken: report the first error)
        return DataFileError(f"{filepath}: cannot be read as an atomic file ({error})")
    for column in frame.columns:
        name, _, ftype = column.partition(":")
        if ftype != FeatureType.FLOAT.value:
            continue
        values = frame[column]
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values.index[values.notna() & numbers.isna()]
        if len(bad):
            return DataFileError(
                f"{filepath}: column {name} is declared float but {len(bad)} row(s) hold a value that is not a "
                f"number ({_lines(bad)}; the first: {values[bad[0]]!r})"
            )
    return DataFileError(f"{filepath}: cannot be read as an atomic file ({error})")


def _inter_files(dataset):
    name, folder = dataset.dataset_name, dataset.dataset_path
    parts = dataset.benchmark_filename_list
    if parts is None:
        return os.path.join(folder, f"{name}.inter")
    return ", ".join(os.path.join(folder, f"{name}.{part}.inter") for part in parts)


def orders_by_time(config):
    """Whether this run orders each user's interactions by ``TIME_FIELD``: sequential models do
    (``SequentialDataset`` sorts by user and time before it builds the prefixes), other models with ``eval_args:
    {order: TO}``; neither with ``benchmark_filename`` (pre-split files, used in their own order)."""
    if config["benchmark_filename"] is not None:
        return False
    eval_args = config["eval_args"]
    return config["MODEL_TYPE"] == ModelType.SEQUENTIAL or (isinstance(eval_args, dict) and eval_args.get("order") == "TO")


def check_interactions(dataset):
    """Check ``dataset.inter_feat`` as read from the ``.inter`` file(s) (see the module docstring).

    Raises:
        DataFileError: the order field is not in the file, or has missing or non-finite values.
    """
    inter = dataset.inter_feat
    if inter is None:
        return
    where = _inter_files(dataset)
    total = len(inter)
    single_file = dataset.benchmark_filename_list is None
    time_field = dataset.time_field
    if time_field and orders_by_time(dataset.config):
        if time_field not in inter.columns:
            raise DataFileError(
                f"{where}: no column [{time_field}] (TIME_FIELD), which {dataset.config['model']} needs to order "
                f"each user's interactions; the columns read are {list(inter.columns)}. Add a "
                f"'{time_field}:float' column, or set TIME_FIELD to the file's time column"
            )
        times = inter[time_field]
        if dataset.field2type.get(time_field) == FeatureType.FLOAT:
            bad = times.index[~np.isfinite(times.to_numpy(dtype=np.float64, na_value=np.nan))]
        else:
            bad = times.index[times.isna()]
        if len(bad):
            at = f" ({_lines(bad)})" if single_file else ""
            raise DataFileError(
                f"{where}: {len(bad)} of {total} rows have a missing or non-finite {time_field} (TIME_FIELD, the "
                f"order of each user's interactions){at}; RecBole would fill them with the column mean and "
                "silently reorder those users' histories. Fix or remove these rows"
            )
    id_fields = [f for f in (dataset.uid_field, dataset.iid_field) if f and f in inter.columns]
    for field in id_fields:
        missing = int(inter[field].isna().sum())
        if missing:
            warnings.warn(f"{where}: {missing} of {total} rows have no {field}; RecBole drops them", DataWarning,
                          stacklevel=2)
    if len(id_fields) == 2 and time_field and time_field in inter.columns:  # without time, a repeat is no duplicate
        key = id_fields + [time_field]
        duplicates = int(inter.dropna(subset=id_fields).duplicated(subset=key).sum())
        if duplicates:
            keep = dataset.config["rm_dup_inter"]
            fate = (f"rm_dup_inter: {keep} removes repeated user-item pairs" if keep is not None
                    else "they train as separate interactions (rm_dup_inter: first would keep one per user-item pair)")
            warnings.warn(f"{where}: {duplicates} of {total} rows repeat an earlier ({', '.join(key)}) row; {fate}",
                          DataWarning, stacklevel=2)

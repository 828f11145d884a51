"""Atomic files are checked as RecBole loads them (compat shim 15, recbole_sprint.data.checks): an order field
with missing or non-finite values is an error, NaN ids and duplicate rows a warning with counts, a malformed
file an error naming the file and column; training popularity counts every interaction once."""

import pytest
import torch

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.data.checks import DataFileError, DataWarning
from recbole_sprint.evaluator.popularity import item_interaction_counts
from tests.tiny_data import HEADER, tiny_data_config, tiny_rows, write_inter


def load(tmp_path, monkeypatch, rows=None, header=None, model="SASRecSPRINT", **overrides):
    monkeypatch.chdir(tmp_path)
    path = write_inter(tmp_path, "d", rows, header)
    config = Config(model=model, dataset="d", config_dict=tiny_data_config(tmp_path, train_mode="prefix", **overrides))
    return path, config


@pytest.mark.parametrize("bad", ["", "nan", "inf", "-inf"])
def test_order_field_with_missing_or_non_finite_values_is_an_error(tmp_path, monkeypatch, bad):
    rows = tiny_rows()
    rows[4][3] = bad
    rows[9][3] = bad
    path, config = load(tmp_path, monkeypatch, rows)
    with pytest.raises(DataFileError) as error:
        create_dataset(config)  # RecBole would fill the mean and reorder the user's history
    assert f"{path}: 2 of {len(rows)} rows have a missing or non-finite timestamp (TIME_FIELD" in str(error.value)
    assert "lines 6, 11" in str(error.value)


def test_nan_ids_and_duplicates_are_warned_with_counts(tmp_path, monkeypatch):
    rows = tiny_rows()
    rows[3][0] = ""  # no user
    rows[5][1] = ""  # no item
    rows += [list(rows[10]), list(rows[11]), list(rows[11])]  # 3 repeated (user, item, time) rows
    path, config = load(tmp_path, monkeypatch, rows)
    with pytest.warns(DataWarning) as record:
        create_dataset(config)
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert f"{path}: 1 of {len(rows)} rows have no user_id; RecBole drops them" in messages
    assert f"{path}: 1 of {len(rows)} rows have no item_id; RecBole drops them" in messages
    assert any(m.startswith(f"{path}: 3 of {len(rows)} rows repeat an earlier (user_id, item_id, timestamp) row")
               for m in messages)


def test_clean_file_gives_no_warning(tmp_path, monkeypatch, recwarn):
    _, config = load(tmp_path, monkeypatch)
    create_dataset(config)
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]


@pytest.mark.parametrize("header, rows_change, message", [
    (["user_id"] + HEADER[1:], None, r"malformed header \(line 1\): column 1 is 'user_id', not '<name>:<type>'"),
    (["user_id:tokn"] + HEADER[1:], None, r"header \(line 1\): column 1 'user_id' has unknown type \[tokn\]"),
    (None, (2, "yesterday"), r"column timestamp is declared float but 1 row\(s\) hold a value that is not a number "
                             r"\(line 4; the first: 'yesterday'\)"),
])
def test_malformed_file_names_file_and_column(tmp_path, monkeypatch, header, rows_change, message):
    rows = tiny_rows()
    if rows_change:
        rows[rows_change[0]][3] = rows_change[1]
    path, config = load(tmp_path, monkeypatch, rows, header)
    with pytest.raises(DataFileError, match=f"{path}: {message}"):
        create_dataset(config)


@pytest.mark.parametrize("model", ["HSTU", "SASRec"])
def test_order_field_missing_from_the_file_is_an_error(tmp_path, monkeypatch, model):
    rows = [row[:3] for row in tiny_rows()]
    path, config = load(tmp_path, monkeypatch, rows, HEADER[:3], model=model)  # load_col asks for timestamp
    with pytest.raises(DataFileError, match=rf"{path}: no column \[timestamp\] \(TIME_FIELD\), which {model} needs"):
        create_dataset(config)  # RecBole: KeyError: 'timestamp'


def test_training_popularity_counts_each_interaction_once_for_any_history_length(tmp_path, monkeypatch):
    """MAX_ITEM_LIST_LENGTH: 1 made every prefix row 'a first prefix' and double-counted the training split."""
    counts = {}
    for length in (1, 2, 5):
        _, config = load(tmp_path, monkeypatch, MAX_ITEM_LIST_LENGTH=length)
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        counts[length] = item_interaction_counts(train_data._dataset), item_interaction_counts(dataset)
    users, per_user = 12, 6
    assert int(counts[1][0].sum()) == users * (per_user - 2)  # leave-one-out: all but valid and test
    assert int(counts[1][1].sum()) == users * per_user  # the whole augmented table: every interaction
    for length in (2, 5):
        assert torch.equal(counts[1][0], counts[length][0]) and torch.equal(counts[1][1], counts[length][1])

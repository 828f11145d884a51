"""Datasets: the clear error for a dataset that is neither on disk nor downloadable; the shared copies."""

import os
import urllib.error

import pytest
import torch

from recbole_sprint.config import Config
from recbole_sprint.data import DatasetUnavailableError, create_dataset, data_preparation

from ..conftest import SHARED_DATASETS


def test_missing_dataset_without_network_is_a_clear_error(tmp_path, monkeypatch):
    from recbole.data.dataset import dataset as recbole_dataset

    def no_network(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(recbole_dataset, "decide_download", no_network)  # no network, wherever this runs
    config = Config(model="SASRecSPRINT", dataset="ml-1m", config_dict={"data_path": str(tmp_path)})
    with pytest.raises(DatasetUnavailableError) as error:
        create_dataset(config)
    message = str(error.value)
    assert "dataset [ml-1m] is not on disk and could not be downloaded" in message
    assert os.path.join(str(tmp_path), "ml-1m") in message and "--data_path" in message


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATASETS, "ml-1m-3k")), reason="needs ../shared/datasets")
def test_shared_ml_1m_3k_loads_with_its_timestamps(tiny):
    config = Config(model="SASRecSPRINT", dataset="ml-1m-3k", config_dict=tiny(data_path=SHARED_DATASETS))
    dataset = create_dataset(config)
    assert dataset.user_num - 1 == 2998 and dataset.inter_num == 487515
    train_data, valid_data, test_data = data_preparation(config, dataset)  # sorts by timestamp
    assert "timestamp_list" in train_data._dataset.inter_feat.columns
    assert len(test_data._dataset.inter_feat) == 2998  # leave-one-out: one test target per user


def test_sequential_model_without_time_field_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match=r"does not load TIME_FIELD \[timestamp\]"):
        Config(model="SASRec", dataset="ml-100k", config_dict=tiny(load_col={"inter": ["user_id", "item_id"]}))


def _file_timestamps():
    """{(user token, item token): timestamp} of ml-100k's atomic file, as integers (Unix seconds)."""
    import pandas as pd
    import recbole

    path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k", "ml-100k.inter")
    frame = pd.read_csv(path, sep="\t", usecols=[0, 1, 3])
    frame.columns = ["user", "item", "time"]
    return {(str(u), str(i)): int(t) for u, i, t in frame.itertuples(index=False)}


@pytest.mark.parametrize("train_mode", ["prefix", "full_sequence"])
def test_hstu_gets_timestamps_to_the_second(tiny, train_mode):
    """float32 would round ml-100k's ~8.8e8-second times to multiples of 64 s (HSTU's time buckets)."""
    overrides = tiny(user_inter_num_interval="[0,60]", train_mode=train_mode)
    config = Config(model="HSTU", dataset="ml-100k", config_dict=overrides)
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    rows = test_data._dataset.inter_feat
    assert rows["timestamp"].dtype == torch.float64 and rows["timestamp_list"].dtype == torch.float64
    expected = _file_timestamps()
    dataset = test_data._dataset
    users = dataset.id2token(dataset.uid_field, rows["user_id"])
    items = dataset.id2token(dataset.iid_field, rows["item_id"])
    times = rows["timestamp"].tolist()
    assert [expected[(u, i)] for u, i in zip(users, items)] == times  # exact, every test target
    assert any(t != float(torch.tensor(t, dtype=torch.float32)) for t in times)  # float32 would have changed some


def test_recbole_models_keep_recbole_float32_timestamps(tiny):
    config = Config(model="SASRec", dataset="ml-100k", config_dict=tiny(user_inter_num_interval="[0,60]"))
    _, _, test_data = data_preparation(config, create_dataset(config))
    assert test_data._dataset.inter_feat["timestamp"].dtype == torch.float32

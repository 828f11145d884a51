"""Datasets: the clear error for a dataset that is neither on disk nor downloadable; the shared copies."""

import os
import urllib.error

import pytest

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

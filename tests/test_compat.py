"""recbole_sprint.compat: each shim against the RecBole symptom it fixes."""

import os
from collections import Counter

import numpy as np
import pytest
import torch

import recbole_sprint  # noqa: F401
from recbole_sprint import compat
from recbole_sprint.config import Config


def test_anomaly_detection_is_off_after_recbole_models_import():
    from recbole.model.sequential_recommender.sine import SINE  # noqa: F401  (the module that switches it on)

    assert not torch.is_anomaly_enabled()


def test_numpy_aliases_exist_and_keep_numpy_own_names():
    compat.numpy_aliases()
    assert np.float is np.float64 and np.unicode is np.str_
    assert np.bool_ is np.dtype(bool).type


def test_collector_moves_only_tensors(tiny):
    config = Config(model="SASRec", dataset="ml-100k", config_dict=tiny())
    collector = compat.CompatCollector(config)
    collector.data_struct.set("data.num_items", 7)
    collector.data_struct.set("data.count_items", Counter({1: 2}))
    collector.data_struct.set("rec.items", torch.tensor([[1, 2]]))
    struct = collector.get_data_struct()  # RecBole's Collector raises AttributeError: 'int' has no 'cpu'
    assert struct.get("data.num_items") == 7 and struct.get("data.count_items") == Counter({1: 2})
    assert "rec.items" not in collector.data_struct  # per-evaluation data is cleared, as in RecBole


def test_trusted_checkpoint_loading(tmp_path):
    path = os.path.join(str(tmp_path), "ckpt.pth")
    torch.save({"config": Counter(a=1), "state_dict": {}}, path, pickle_protocol=4)  # like RecBole's trainer
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path)
    with compat.trusted_checkpoint_loading():
        assert torch.load(path)["config"] == Counter(a=1)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path)  # restored afterwards


def test_download_needs_no_process_group(monkeypatch, tmp_path):
    """RecBole calls torch.distributed.barrier() after a single-process download (issue #1989)."""
    from recbole.data.dataset import dataset as recbole_dataset

    calls = []

    class FakeDataset:
        config = {"local_rank": 0}
        dataset_name = "fake"
        dataset_path = str(tmp_path)
        logger = type("L", (), {"info": lambda *a: None})()

        def _get_download_url(self, key):
            return "http://example.invalid/fake.zip"

    monkeypatch.setattr(recbole_dataset, "decide_download", lambda url: True)
    monkeypatch.setattr(recbole_dataset, "download_url", lambda url, folder: calls.append(url) or "fake.zip")
    monkeypatch.setattr(recbole_dataset, "extract_zip", lambda path, folder: None)
    monkeypatch.setattr(recbole_dataset.os, "unlink", lambda path: None)
    monkeypatch.setattr(recbole_dataset, "rename_atomic_files", lambda *a: None)
    assert not torch.distributed.is_initialized()
    recbole_dataset.Dataset._download(FakeDataset())  # RecBole's own raises "Default process group ..."
    assert calls == ["http://example.invalid/fake.zip"]


def _features_with_gaps():
    """A stand-in for a RecBole Dataset after its side features were merged: one token, one float field."""
    import logging
    import types

    import pandas as pd
    from recbole.utils import FeatureType

    item_feat = pd.DataFrame({"brand": [3.0, np.nan, 5.0], "price": [1.0, np.nan, 3.0]})
    return types.SimpleNamespace(
        logger=logging.getLogger("test"),
        feat_name_list=["item_feat"],
        item_feat=item_feat,
        field2type={"brand": FeatureType.TOKEN, "price": FeatureType.FLOAT},
    )


@pytest.mark.filterwarnings("ignore::pandas.errors.ChainedAssignmentError")  # RecBole's own fills warn, then fail
def test_fill_nan_fills_token_and_float_fields_under_copy_on_write():
    import pandas as pd
    from recbole.data.dataset.dataset import Dataset

    with pd.option_context("mode.copy_on_write", True):  # pandas 3's only mode
        unpatched = _features_with_gaps()
        Dataset._fill_nan.__wrapped__(unpatched)  # RecBole's own: fills a copy
        assert unpatched.item_feat.isna().sum().sum() == 2

        dataset = _features_with_gaps()
        Dataset._fill_nan(dataset)
    assert dataset.item_feat["brand"].tolist() == [3.0, 0.0, 5.0]  # TOKEN: [PAD] = 0
    assert dataset.item_feat["price"].tolist() == [1.0, 2.0, 3.0]  # FLOAT: the field's mean

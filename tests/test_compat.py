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


def test_dok_update_adds_entries_as_recbole_graph_models_expect():
    import scipy.sparse as sp

    compat.dok_update()
    matrix = sp.dok_matrix((3, 4), dtype=np.float32)
    matrix._update({(0, 1): 1, (2, 3): 1})  # lightgcn.py:111 (and NGCF, NCL, GCMC, SpectralCF, KGIN, MCCLK)
    assert matrix.nnz == 2 and matrix.toarray().tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]


def test_lightgcn_trains_and_tests_on_current_scipy(tiny):
    """RecBole's LightGCN through the plugin (its adjacency matrix needs shim 13)."""
    from recbole_sprint.quick_start import run_recbole_sprint

    config = tiny(embedding_size=16, n_layers=1, train_batch_size=4096)
    for key in ("train_neg_sample_args", "MAX_ITEM_LIST_LENGTH", "hidden_size", "inner_size", "n_heads"):
        config.pop(key)  # general model: RecBole's default negative sampling (BPR)
    result = run_recbole_sprint("LightGCN", "ml-100k", config_dict=config)
    assert 0 < result["test_result"]["ndcg@10"] <= 1


def test_series_len_is_per_row_inside_recbole_sequence_methods():
    """pandas 3's Series.agg(len) is the Series' length; RecBole's sequence fields need one length per row."""
    import pandas as pd

    original = pd.Series.agg

    class Dataset:
        def _remap(self, column):  # the two calls of RecBole's dataset.py:1191,1217
            return np.cumsum(column.agg(len))[:-1].tolist(), column.agg(np.concatenate).tolist()

    Dataset._remap = compat._with_len_per_row(Dataset._remap)
    column = pd.Series([np.array([1, 2]), np.array([3, 4, 5]), np.array([6])])
    assert Dataset()._remap(column) == ([2, 5], [1, 2, 3, 4, 5, 6])
    assert pd.Series.agg is original  # only while the method runs
    from recbole.data.dataset.dataset import Dataset as RecBoleDataset

    assert RecBoleDataset._remap.recbole_sprint_shim  # installed by recbole_sprint's import


def test_recbole_sources_compile_without_syntax_warnings(tmp_path):
    """Python >= 3.12 warns of RecBole's invalid escapes (dien.py) whenever it compiles them (no bytecode)."""
    import subprocess
    import sys

    code = "import recbole_sprint\nfrom recbole_sprint.utils import get_model\nget_model('DIEN')\n"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SyntaxWarning" not in done.stderr, done.stderr[-2000:]

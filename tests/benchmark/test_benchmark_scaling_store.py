"""Size presets, parameter counts, power-law fits and the results store."""

import json

import pytest
from torch import nn

from recbole_sprint.benchmark.scaling import SIZE_PRESETS, fit_power_law, parameter_counts, size_config
from recbole_sprint.benchmark.store import ResultStore


def test_size_presets_follow_the_paper():
    assert list(SIZE_PRESETS) == ["XXS", "XS", "Small", "Base", "Large", "XL", "XXL"]
    assert size_config("XXS") == {"n_layers": 1, "hidden_size": 64, "n_heads": 1, "inner_size": 256}
    assert size_config("XXL") == {"n_layers": 12, "hidden_size": 1536, "n_heads": 24, "inner_size": 6144}
    for name, (layers, d, heads) in SIZE_PRESETS.items():
        assert heads == d // 64, name
    # the paper's "#Params" column is 12 L d^2: 0.05M ... 0.34B
    assert [round(12 * l * d * d / 1e6, 2) for l, d, _ in SIZE_PRESETS.values()] == [
        0.05, 0.39, 3.15, 18.87, 56.62, 125.83, 339.74]
    with pytest.raises(ValueError, match="Huge.*XXS"):
        size_config("Huge")


def test_parameter_counts_split_embeddings_and_tied_weights():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3), nn.Embedding(5, 4))
    assert parameter_counts(model) == {"n_params": 40 + 15 + 20, "n_params_embedding": 60, "n_params_non_embedding": 15}
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight  # output layer tied to the item table: counted once, as embedding
    assert parameter_counts(tied) == {"n_params": 40, "n_params_embedding": 40, "n_params_non_embedding": 0}


def test_power_law_fit_recovers_exponent():
    x = [1e3, 1e4, 1e5, 1e6]
    fit = fit_power_law(x, [2.0 * v**0.25 for v in x])
    assert fit["a"] == pytest.approx(2.0) and fit["b"] == pytest.approx(0.25) and fit["r2"] == pytest.approx(1.0)
    assert fit_power_law([1e3], [0.1]) is None and fit_power_law([1, 2], [0.1, 0.0]) is None


def test_store_ignores_and_repairs_a_torn_last_line(tmp_path):
    store = ResultStore(str(tmp_path / "runs.jsonl"))
    store.append({"run_id": "a", "value": 1})
    with open(store.path, "a") as f:
        f.write('{"run_id": "b", "val')  # a crash in the middle of writing run b
    assert store.finished_ids() == {"a"}
    store.append({"run_id": "b", "value": 2})
    lines = open(store.path).read().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["a", "b"]


def test_shard_option_is_checked():
    from recbole_sprint.benchmark.runner import check_shard

    assert check_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match=r"--shard must be I/N with 0 <= I < N"):
            check_shard(bad)

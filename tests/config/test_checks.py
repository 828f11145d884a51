"""Config inputs: values are parsed as literals, never evaluated (compat shim 14); unknown keys, a valid_metric
the evaluation does not compute, MAX_ITEM_LIST_LENGTH < 1, a tail_ratio outside (0, 1) and a missing dataset
fail when the Config is built, before any data is read (recbole_sprint.config.checks)."""

import sys

import pytest

from recbole_sprint import compat
from recbole_sprint.config import Config
from recbole_sprint.config.checks import ConfigKeyError
from recbole_sprint.data import DatasetUnavailableError
from tests.tiny_data import tiny_data_config, write_inter


@pytest.fixture
def data(tmp_path, monkeypatch):
    """``data(**overrides)`` -> a config dict for the tiny dataset 'tiny' written under tmp_path."""
    monkeypatch.chdir(tmp_path)
    write_inter(tmp_path, "tiny")
    return lambda **overrides: tiny_data_config(tmp_path, **overrides)


def code_values(marker):
    return [f"__import__('os').system('touch {marker}')", f"open({str(marker)!r}, 'w')"]


@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("-2", -2), ("[1, 2]", [1, 2]), ("{'inter': ['user_id']}", {"inter": ["user_id"]}),
    ("None", None), ("True", True), ("false", False), ("0,1", (0, 1)), ("ml-1m", "ml-1m"), ("saved/x", "saved/x"),
    ("1/3", "1/3"), ("{1, 2}", "{1, 2}"), ("", ""),
])
def test_literal_value(text, value):
    assert compat.literal_value(text) == value


def test_code_in_config_values_is_never_run(tmp_path, data, monkeypatch):
    marker = tmp_path / "MARKER"
    for code in code_values(marker):
        config = Config(model="SASRecSPRINT", dataset="tiny", config_dict=data(checkpoint_dir=code))
        assert config["checkpoint_dir"] == code  # a string key: kept as the string
        with pytest.raises(ValueError, match="learning_rate must be a number.*got the string"):
            Config(model="SASRecSPRINT", dataset="tiny", config_dict=data(learning_rate=code))
        monkeypatch.setattr(sys, "argv", ["run", f"--seed={code}"])  # the command line, as RecBole reads it
        with pytest.raises(ValueError, match="seed must be a number"):
            Config(model="SASRecSPRINT", dataset="tiny", config_dict=data())
        monkeypatch.setattr(sys, "argv", ["run"])
    assert not marker.exists()


def test_misspelled_key_is_an_error_with_did_you_mean(data, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run", "--sprint_atn_weight=1"])
    with pytest.raises(ConfigKeyError, match=r"\[sprint_atn_weight\] \(from the command line.*did you mean "
                                             r"sprint_attn_weight"):
        Config(model="SASRecSPRINT", dataset="tiny", config_dict=data())
    monkeypatch.setattr(sys, "argv", ["run"])
    with pytest.raises(ConfigKeyError, match="did you mean learning_rate"):
        Config(model="SASRec", dataset="tiny", config_dict=data(learning_rat=0.1))


def test_known_keys_pass(data, tmp_path, monkeypatch):
    """RecBole's own keys without a yaml default, another model's yaml key, the launch's keys and a dataset
    yaml's keys are all accepted."""
    monkeypatch.setattr(sys, "argv", ["run", "--nproc=1", "--group_offset=0", "--config_files=x.yaml"])
    Config(model="SASRecSPRINT", dataset="tiny", config_dict=data(
        rm_dup_inter="first", encoding="utf-8", log_flops=False, amp_dtype=None, n_layers=1,
        user_inter_num_interval="[0,inf)", benchmark_filename=None, kg_reverse_r=False))
    monkeypatch.setattr(sys, "argv", ["run"])
    Config(model="GRU4Rec", dataset="tiny", config_dict=data(embedding_size=8, train_neg_sample_args=None))


@pytest.mark.parametrize("overrides, message", [
    ({"valid_metric": "MRR@10"}, r"valid_metric \[MRR@10\] is not among .*ndcg@5"),
    ({"valid_metric": "NDCG@10"}, r"valid_metric \[NDCG@10\] is not among"),  # topk is [5]
    ({"valid_metric": "NDCG"}, r"valid_metric \[NDCG\] is not among"),  # RecBole: KeyError 'ndcg'
    ({"MAX_ITEM_LIST_LENGTH": 0}, "MAX_ITEM_LIST_LENGTH must be an integer >= 1"),
    ({"tail_ratio": 5}, "tail_ratio must be a number in the open interval"),  # no tail metric listed
    ({"tail_ratio": float("nan")}, "tail_ratio must be a number in the open interval"),
    ({"metrics": ["TailPercentage"], "valid_metric": "tailpercentage@5", "tail_ratio": float("inf")},
     "tail_ratio must be a number > 0"),
])
def test_bad_protocol_values_fail_when_the_config_is_built(data, overrides, message):
    with pytest.raises(ValueError, match=message):
        Config(model="SASRecSPRINT", dataset="tiny", config_dict=data(**overrides))


def test_good_protocol_values_pass(data):
    Config(model="SASRecSPRINT", dataset="tiny", config_dict=data(metrics=["TailPercentage"],
                                                                  valid_metric="TailPercentage@5", tail_ratio=20))
    Config(model="SASRecSPRINT", dataset="tiny", config_dict=data(metrics=["NDCG", "SpectralCollapse"],
                                                                  valid_metric="SpectralCollapse"))


@pytest.mark.parametrize("dataset, message", [
    ("tinyy", r"no such dataset \[tinyy\].*datasets there: tiny.*did you mean tiny\?"),
    ("empty", r"no \.inter file for dataset \[empty\]: .*empty/ has no empty\.inter"),
])
def test_missing_dataset_is_named_before_any_other_advice(data, tmp_path, dataset, message):
    (tmp_path / "empty").mkdir()
    # RecBole's default load_col has no timestamp: the TIME_FIELD advice would come first without the check
    with pytest.raises(DatasetUnavailableError, match=message):
        Config(model="SASRecSPRINT", dataset=dataset, config_dict=data(load_col={"inter": ["user_id", "item_id"]}))


@pytest.mark.parametrize("text, message", [
    (None, "no such file"),
    ("a: [1,\n", r"not valid YAML \(line 2, column 1\)"),
    ("- 1\n- 2\n", "must be a yaml mapping"),
    ("x: !!python/name:os.system\n", "not valid YAML"),  # plain data only: no python tags
])
def test_config_file_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=f"config file {path}: {message}"):
        Config(model="SASRecSPRINT", dataset="ml-100k", config_file_list=[str(path)])


def test_config_file_floats_as_recbole_reads_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-3\nsprint_attn_weight: .nan\n")
    values = compat.load_config_files([str(path)])
    assert values["learning_rate"] == 0.001 and values["sprint_attn_weight"] != values["sprint_attn_weight"]

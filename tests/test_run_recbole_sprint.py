"""The main job, run_recbole_sprint.py, as a user calls it (in-process, tiny config)."""

import logging
import importlib.util
import os
import sys
import urllib.error

from .conftest import REPO


def _main_module():
    spec = importlib.util.spec_from_file_location("run_recbole_sprint", os.path.join(REPO, "run_recbole_sprint.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_ARGS = [
    "--epochs=1",
    "--n_layers=1",
    "--hidden_size=16",
    "--inner_size=32",
    "--MAX_ITEM_LIST_LENGTH=10",
    "--train_batch_size=1024",
    "--log_flops=False",
    "--show_progress=False",
]


def test_main_job_trains_logs_sprint_parts_and_tests(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)  # pytest owns the root logger, so RecBole's file handler stays idle
    monkeypatch.chdir(tmp_path)
    argv = ["run_recbole_sprint.py", "--model=SASRecSPRINT", "--dataset=ml-100k", *TINY_ARGS]
    monkeypatch.setattr(sys, "argv", argv)  # RecBole's Config reads --key=value from sys.argv
    assert _main_module().main(argv[1:]) == 0
    log = caplog.text
    for part in ("(sum of 1 step; per step: ", "per-step means: rec: ", "sprint_attn: ", "sprint_ffn: ", "sprint_emb: ",
                 "best valid", "test result", "tailexposure@10", "arp@10", "tailcoverage@10", "tailrecall@10",
                 "historyshare@10"):  # the plugin's default metrics
        assert part in log
    assert "n_layers = 1" in log  # the command-line override reached the config


def test_main_job_without_network_explains_where_to_put_the_files(tmp_path, monkeypatch, capsys):
    from recbole.data.dataset import dataset as recbole_dataset

    def no_network(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(recbole_dataset, "decide_download", no_network)
    monkeypatch.chdir(tmp_path)
    argv = ["run_recbole_sprint.py", "--dataset=ml-1m", f"--data_path={tmp_path}", *TINY_ARGS]
    monkeypatch.setattr(sys, "argv", argv)
    assert _main_module().main(argv[1:]) == 2
    err = capsys.readouterr().err
    assert "dataset [ml-1m] is not on disk and could not be downloaded" in err and "--data_path" in err
    assert "Traceback" not in err

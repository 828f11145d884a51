"""The command lines report a wrong input in one line, ``error: <message>``, with exit status 2 (the traceback only
with --debug), and never run code found in a config value, a spec or a .hyper file."""

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

from recbole_sprint.benchmark.__main__ import main as benchmark_main
from recbole_sprint.tune.common import main as tune_main
from tests.tiny_data import HEADER, tiny_data_config, tiny_rows, write_inter

from .conftest import REPO


def _run_main():
    spec = importlib.util.spec_from_file_location("run_recbole_sprint", os.path.join(REPO, "run_recbole_sprint.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """Tiny datasets under tmp_path/data and a config yaml for them; returns (config file, data path)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["run_recbole_sprint.py"])
    data = tmp_path / "data"
    write_inter(data, "tiny")
    write_inter(data, "badheader", header=["user_id"] + HEADER[1:])
    write_inter(data, "badtype", header=["user_id:tokn"] + HEADER[1:])
    rows = tiny_rows()
    rows[2][3] = "yesterday"
    write_inter(data, "textts", rows)
    write_inter(data, "notime", [row[:3] for row in tiny_rows()], HEADER[:3])
    (data / "empty").mkdir()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_data_config(data)))
    (tmp_path / "broken.yaml").write_text("epochs: [1,\n")
    return str(config), data


def one_error_line(capsys, *expected):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["--model=SASRecX", "--dataset=tiny"], ["model [SASRecX] is neither"]),
    (["--dataset=tinyy"], ["no such dataset [tinyy]", "did you mean tiny?"]),
    (["--dataset=empty"], ["no .inter file for dataset [empty]"]),
    (["--dataset=badheader"], ["badheader.inter: malformed header (line 1)"]),
    (["--dataset=badtype"], ["unknown type [tokn]"]),
    (["--dataset=textts"], ["column timestamp is declared float", "'yesterday'"]),
    (["--model=HSTU", "--dataset=notime"], ["no column [timestamp] (TIME_FIELD), which HSTU needs"]),
    (["--dataset=tiny", "--valid_metric=MRR@10"], ["valid_metric [MRR@10] is not among"]),
    (["--dataset=tiny", "--sprint_atn_weight=1"], ["unknown config key [sprint_atn_weight]", "did you mean"]),
    (["--dataset=tiny", "--MAX_ITEM_LIST_LENGTH=0"], ["MAX_ITEM_LIST_LENGTH must be an integer >= 1"]),
    (["--dataset=tiny", "--sprint_temperature=float('nan')"], ["sprint_temperature must be a number (default"]),
])
def test_main_job_user_errors(setup, capsys, args, expected):
    config, _ = setup
    assert _run_main()([f"--config_files={config}", *args]) == 2  # the default model: SASRecSPRINT
    one_error_line(capsys, *expected)


@pytest.mark.parametrize("files, expected", [
    ("missing.yaml", "config file missing.yaml: no such file"),
    ("broken.yaml", "broken.yaml: not valid YAML (line 2"),
])
def test_main_job_config_file_errors(setup, capsys, files, expected):
    config, _ = setup
    assert _run_main()(["--dataset=tiny", f"--config_files={config} {files}"]) == 2
    one_error_line(capsys, expected)


@pytest.mark.parametrize("key", ["sprint_temperature", "sprint_attn_weight"])
def test_main_job_rejects_nan_sprint_values(setup, tmp_path, capsys, key):
    config, _ = setup
    (tmp_path / "nan.yaml").write_text(f"{key}: .nan\n")  # a yaml float: passed RecBole's and the old checks
    assert _run_main()(["--dataset=tiny", f"--config_files={config} {tmp_path / 'nan.yaml'}"]) == 2
    one_error_line(capsys, f"{key} must be a number", "(finite", "got nan")


def test_main_job_runs_no_code_from_overrides(setup, tmp_path, capsys):
    config, _ = setup
    marker = tmp_path / "MARKER"
    for value in (f"__import__('os').system('touch {marker}')", f"open('{marker}','w')"):
        assert _run_main()(["--dataset=tiny", f"--config_files={config}", f"--seed={value}"]) == 2
        one_error_line(capsys, "seed must be a number")
    assert not marker.exists()


def test_debug_shows_the_traceback(setup):
    config, _ = setup
    with pytest.raises(ValueError, match="valid_metric"):
        _run_main()(["--dataset=tiny", f"--config_files={config}", "--valid_metric=MRR@10", "--debug"])


def test_main_job_as_a_process_exits_2_with_one_line(setup):
    config, _ = setup
    done = subprocess.run([sys.executable, os.path.join(REPO, "run_recbole_sprint.py"), "--dataset=tiny",
                           f"--config_files={config}", "--sprint_atn_weight=1"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "did you mean" in done.stderr


def _spec(tmp_path, data, **changes):
    spec = {"name": "t", "models": ["SASRecSPRINT"], "datasets": [{"name": "tiny", "data_path": str(data)}],
            "seeds": [1], "config": tiny_data_config(data)}
    spec.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_benchmark_spec_runs_no_code_and_rejects_repeated_cells(setup, tmp_path, capsys):
    _, data = setup
    marker = tmp_path / "MARKER"
    code = {**tiny_data_config(data), "learning_rate": f"__import__('os').system('touch {marker}')"}
    assert benchmark_main([_spec(tmp_path, data, config=code), "--output_dir", str(tmp_path / "out")]) == 2
    one_error_line(capsys, "learning_rate must be a number")
    code = {**tiny_data_config(data), "checkpoint_dir": f"open('{marker}', 'w')"}  # a string key: stays a string
    assert benchmark_main([_spec(tmp_path, data, config=code), "--render_only", "--output_dir",
                           str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert not marker.exists()

    twice = [{"name": "tiny", "data_path": str(data)}] * 2
    assert benchmark_main([_spec(tmp_path, data, datasets=twice), "--output_dir", str(tmp_path / "out")]) == 2
    one_error_line(capsys, "spec entry 'datasets' lists [tiny] twice")
    assert benchmark_main([_spec(tmp_path, data, sweep={"hidden_size": [8, 8]})]) == 2
    one_error_line(capsys, "spec entry 'sweep.hidden_size' lists [8] twice")
    assert benchmark_main([_spec(tmp_path, data, config={**tiny_data_config(data), "sprint_atn_weight": 1})]) == 2
    one_error_line(capsys, "unknown config key [sprint_atn_weight]", "did you mean sprint_attn_weight")


def test_benchmark_corrupt_store_line_names_the_line(setup, tmp_path, capsys):
    _, data = setup
    out = tmp_path / "out"
    out.mkdir()
    good = '{"run_id": "a", "test_result": {}}\n'
    (out / "runs.jsonl").write_text(good + '{"run_id": "b", "test_res\n' + good)
    assert benchmark_main([_spec(tmp_path, data), "--render_only", "--output_dir", str(out)]) == 2
    line = one_error_line(capsys, "runs.jsonl: line 2 is not valid JSON", "delete that line", "sed -i '2d'")
    assert "Traceback" not in line


def test_tune_user_errors_and_no_code_from_the_hyper_file(setup, tmp_path, capsys):
    config, _ = setup
    marker = tmp_path / "MARKER"
    hyper = tmp_path / "space.hyper"
    hyper.write_text(f"learning_rate choice [\"__import__('os').system('touch {marker}')\"]\n")
    argv = ["--backend=local", "--model=SASRecSPRINT", "--dataset=tiny", f"--params_file={hyper}",
            "--num_samples=1", f"--config_files={config}", f"--output_dir={tmp_path / 'tune'}"]
    assert tune_main(argv + ["--sprint_atn_weight=1"]) == 2  # a misspelled fixed override
    one_error_line(capsys, "unknown config key [sprint_atn_weight]", "did you mean")
    assert tune_main([*argv[:2], "--dataset=tinyy", *argv[3:]]) == 2
    one_error_line(capsys, "no such dataset [tinyy]")
    assert tune_main(argv) != 0  # the trial fails on the string, which is never run
    assert not marker.exists()

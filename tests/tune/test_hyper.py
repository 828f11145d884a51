"""The .hyper parser (no Ray) and its translation into Ray Tune domains."""


import pytest

from recbole_sprint.tune.hyper import HyperFileError, HyperParam, check_names, parse_hyper_file, parse_hyper_line


def write(tmp_path, text, name="space.hyper"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("hidden_size choice [32,64,128]", ("choice", (32, 64, 128))),
        ("mlp choice [[64,32], [128]]  # a comment", ("choice", ([64, 32], [128]))),
        ("loss_type choice ['CE','BPR']", ("choice", ("CE", "BPR"))),
        ("n_heads grid [1,2,4]", ("grid", (1, 2, 4))),
        ("dropout_prob uniform 0.1,0.5", ("uniform", (0.1, 0.5))),
        ("dropout_prob uniform 0.1 0.5", ("uniform", (0.1, 0.5))),
        ("weight quniform 0,10,2.5", ("quniform", (0.0, 10.0, 2.5))),
        ("learning_rate loguniform -9.21,-4.61", ("loguniform", (-9.21, -4.61))),
        ("n_layers randint 1,5", ("randint", (1, 5))),
    ],
)
def test_each_distribution(line, expected):
    param = parse_hyper_line(line, where="f:1")
    assert (param.distribution, param.args) == expected
    assert param.name == line.split()[0] and param.source == "f:1"
    assert isinstance(param.args[0], type(expected[1][0]))  # randint gives ints, uniform floats


def test_blank_and_comment_lines_are_skipped(tmp_path):
    path = write(tmp_path, "# a search space\n\nlearning_rate choice [0.1, 0.01]\n   \n")
    assert parse_hyper_file(path) == [HyperParam("learning_rate", "choice", (0.1, 0.01), f"{path}:3")]


@pytest.mark.parametrize(
    "line, message",
    [
        ("learning_rate choice", "malformed line 'learning_rate choice'"),
        ("learning_rate", "expected '<name> <distribution> <arguments>'"),
        ("learning_rate normal 0,1", "unknown distribution [normal] for [learning_rate]; allowed: choice, grid"),
        ("learning_rate uniform 0.1", "expected 2 numbers, got 1"),
        ("learning_rate uniform a,b", "expected 2 numbers, got 'a,b'"),
        ("learning_rate uniform 0.5,0.1", "uniform needs low < high"),
        ("n_layers randint 1.5,4", "expected 2 integers"),
        ("w quniform 0,1,0", "quniform step q must be > 0"),
        ("w quniform 1,10,2.5", "quniform bounds must be multiples of q, got low=1.0"),  # Ray refuses them too
        ("hidden_size choice 64", "choice needs a non-empty list"),
        ("hidden_size choice [", "choice needs a Python list literal"),
        ("hidden_size choice []", "choice needs a non-empty list"),
    ],
)
def test_malformed_line_is_a_clear_error(tmp_path, line, message):
    path = write(tmp_path, "hidden_size choice [16]\n" + line + "\n")
    with pytest.raises(HyperFileError) as error:
        parse_hyper_file(path)
    assert message in str(error.value)
    assert f"{path}:2" in str(error.value)  # names the file and the line


def test_duplicate_and_empty_files_are_errors(tmp_path):
    with pytest.raises(HyperFileError, match="given twice"):
        parse_hyper_file(write(tmp_path, "a choice [1]\na uniform 0,1\n"))
    with pytest.raises(HyperFileError, match="no parameters to search"):
        parse_hyper_file(write(tmp_path, "# nothing\n", "empty.hyper"))
    with pytest.raises(FileNotFoundError, match="--params_file: no such file"):
        parse_hyper_file(str(tmp_path / "missing.hyper"))


def test_check_names_suggests_the_closest_key():
    params = [parse_hyper_line("hidden_size choice [16]", "f:1"), parse_hyper_line("hiden_size choice [16]", "f:2")]
    with pytest.raises(HyperFileError) as error:
        check_names(params, {"hidden_size", "n_layers"}, "SASRec on ml-100k")
    assert "f:2: unknown parameter [hiden_size]" in str(error.value)
    assert "did you mean hidden_size" in str(error.value)
    check_names(params[:1], {"hidden_size"}, "SASRec on ml-100k")  # known: no error


def test_shipped_hyper_files_parse_and_name_sasrecsprint_keys(tiny):
    """properties/hyper/*.hyper: valid, and every name is a key of SASRecSPRINT's config."""
    import glob
    import os

    import recbole_sprint
    from recbole_sprint.tune.search import build_fixed_config

    folder = os.path.join(os.path.dirname(recbole_sprint.__file__), "properties", "hyper")
    files = sorted(glob.glob(os.path.join(folder, "*.hyper")))
    assert {os.path.basename(f) for f in files} >= {"sprint.hyper", "backbone.hyper", "learning.hyper"}
    config, _ = build_fixed_config("SASRecSPRINT", "ml-100k", overrides=tiny())
    for path in files:
        check_names(parse_hyper_file(path), config.final_config_dict.keys(), "SASRecSPRINT")
    sprint = {p.name: p.args for p in parse_hyper_file(os.path.join(folder, "sprint.hyper"))}
    assert sprint["sprint_attn_weight"] == (2.5, 5.0, 7.5, 10.0)  # the paper's grid (spec sprint.md section 7)
    assert sprint["sprint_ffn_weight"] == (0.1, 0.01, 0.001, 0.0001)
    assert sprint["sprint_temperature"] == (1.0, 2.0, 4.0, 8.0)


def test_importing_the_parser_does_not_import_ray():
    """The GPU box has no Ray: recbole_sprint and recbole_sprint.tune (parser) must import without it."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        "import sys, recbole_sprint.tune, recbole_sprint.quick_start\n"
        "recbole_sprint.tune.parse_hyper_line('a choice [1]')\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"

"""--help of the three commands (issue 23): answered before torch and RecBole are imported, with the defaults and
the models of the plugin and of RecBole, and without reST markup."""

import os
import subprocess
import sys

import pytest

from recbole_sprint.cli import available_models, only_help, plain

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {
    "main job": ["run_recbole_sprint.py"],
    "benchmark": ["-m", "recbole_sprint.benchmark"],
    "tune": ["-m", "recbole_sprint.tune"],
}
DEFAULTS = {
    "main job": ["(default: SASRecSPRINT)", "(default: ml-100k)", "(default: 1)", "--epochs=5"],
    "benchmark": ["(default:\n                        outputs/benchmark/<spec name>)", "smoke.yaml"],
    "tune": ["(default: 8)", "(default: tune_results)", "--max_epochs"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_is_fast_lists_models_and_defaults(name):
    run = subprocess.run([sys.executable, "-X", "importtime", *COMMANDS[name], "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "recbole", "ray", "pandas", "scipy"))
    assert not heavy, f"--help imported {heavy[:5]}"  # parsed before the heavy imports
    out = run.stdout
    for model in ("SASRecSPRINT", "HSTU", "SASRecPPSPRINT", "SASRec,", "BERT4Rec", "GRU4Rec", "Pop", "LightGCN",
                  "DeepFM", "KGAT"):
        assert model in out, model
    assert "recbole_sprint: SASRecSPRINT" in out and "RecBole sequential:" in out and "RecBole general:" in out
    for default in DEFAULTS[name]:
        assert default in out, default
    assert "``" not in out and ":class:" not in out and ":func:" not in out and ":mod:" not in out
    assert "(default: None)" not in out and "(default: False)" not in out


def test_model_list_matches_the_model_lookup():
    """The list read from the packages' __init__ files holds exactly what get_model resolves there."""
    import recbole.model.general_recommender
    import recbole.model.sequential_recommender

    from recbole_sprint.utils import get_model, plugin_model_names

    groups = dict(available_models())
    assert set(groups["recbole_sprint"]) == set(plugin_model_names())
    for group, module in (("RecBole general", recbole.model.general_recommender),
                          ("RecBole sequential", recbole.model.sequential_recommender)):
        classes = {name for name in dir(module) if isinstance(getattr(module, name), type)}
        assert set(groups[group]) <= classes
    for name in groups["recbole_sprint"] + ["SASRec", "Pop"]:
        assert get_model(name).__name__ == name


@pytest.mark.parametrize("argv, expected", [
    (["python", "run_recbole_sprint.py", "--help"], True),
    (["python", "/x/run_recbole_sprint.py", "--model=HSTU", "-h"], True),
    (["python", "-m", "recbole_sprint.tune", "-h"], True),
    (["python", "-W", "ignore", "-m", "recbole_sprint.benchmark", "spec.yaml", "--help"], True),
    (["python", "-mrecbole_sprint.benchmark", "--help"], True),
    (["python", "run_recbole_sprint.py", "--epochs=1"], False),  # a real run: the shims load
    (["python", "-c", "import recbole_sprint", "--help"], False),
    (["python", "-m", "pytest", "--help"], False),
    (["python", "other.py", "--help"], False),
    (["python", "-m", "recbole_sprint.tune", "--", "-h"], False),
    ([], False),
])
def test_only_help_recognises_the_commands_help(argv, expected):
    assert only_help(argv) is expected


def test_plain_drops_rest_markup():
    assert plain("``--debug`` and :class:`~recbole_sprint.data.DatasetUnavailableError`, :func:`f`") == (
        "--debug and DatasetUnavailableError, f")

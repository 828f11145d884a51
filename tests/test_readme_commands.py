"""README's example commands of the main job, as written.

Each command runs twice: exactly as README writes it, until RecBole starts its first training epoch (config,
dataset, model and trainer all built: the step where RecBole's own CE default used to stop ``--model=SASRec``),
and then to the end with tiny overrides appended (1 epoch, small model), which must train and test. Relative
paths (``--data_path=../shared/datasets``) are relative to the repository root, where README runs them.
"""

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

from .conftest import REPO, SHARED_DATASETS

TINY = ["--epochs=1", "--n_layers=1", "--hidden_size=16", "--inner_size=32", "--MAX_ITEM_LIST_LENGTH=10",
        "--train_batch_size=1024", "--eval_step=1", "--log_flops=False", "--show_progress=False"]
STARTED = "Train     0:"  # RecBole's progress bar of the first training epoch (show_progress: its default)


def readme_commands():
    """Every ``python run_recbole_sprint.py ...`` line of README's code blocks, without its comment."""
    with open(os.path.join(REPO, "README.md")) as handle:
        text = handle.read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("python run_recbole_sprint.py"):
                commands.append(line)
    return commands


def test_readme_lists_the_commands_tested_here():
    assert readme_commands() == [
        "python run_recbole_sprint.py --model=SASRecSPRINT --dataset=ml-100k",
        "python run_recbole_sprint.py --model=SASRecSPRINT --sprint_attn_weight=5.0 --n_layers=4 --epochs=20",
        "python run_recbole_sprint.py --model=SASRec --dataset=ml-1m-3k --data_path=../shared/datasets",
        "python run_recbole_sprint.py --model=SASRecSPRINT --nproc=2",
    ]


def _argv(command):
    words = shlex.split(command)
    assert words[:2] == ["python", "run_recbole_sprint.py"]
    return [sys.executable, os.path.join(REPO, "run_recbole_sprint.py"), *words[2:]]


def _tiny(argv):
    """``argv`` with the tiny overrides: RecBole refuses a key given twice, so TINY's keys replace the command's.
    A multi-process command also gets a free ``--port``: the run as written, killed just before, may still hold
    the default 5678 (EADDRINUSE seen)."""
    tiny_keys = {arg.split("=", 1)[0] for arg in TINY}
    extra = [f"--port={_free_port()}"] if any(arg.startswith("--nproc=") for arg in argv) else []
    return [arg for arg in argv if arg.split("=", 1)[0] not in tiny_keys] + TINY + extra


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(tmp_path):
    # RecBole writes log/, log_tensorboard/ and saved/ into the working directory: the repository root must
    # stay clean, so the commands run in a folder laid out like it (``workdir``: ../shared beside it).
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))


@pytest.fixture
def workdir(tmp_path):
    """A working directory that sees ``../shared/datasets`` as README's commands do from the repository root."""
    root = tmp_path / "repo"
    root.mkdir()
    if os.path.isdir(SHARED_DATASETS):
        (tmp_path / "shared").mkdir()
        os.symlink(SHARED_DATASETS, tmp_path / "shared" / "datasets")
    return root


def _start_as_written(argv, cwd, env, timeout=300):
    """Run ``argv`` until RecBole's first training epoch starts; return (started, output)."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    output, deadline = b"", time.time() + timeout
    os.set_blocking(process.stdout.fileno(), False)
    try:
        while time.time() < deadline:
            chunk = process.stdout.read() or b""
            output += chunk
            if STARTED.encode() in output or process.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the command and, with --nproc, its worker processes
        process.wait()
        output += process.stdout.read() or b""
    text = output.decode(errors="replace")
    return STARTED in text, text


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_starts_as_written_and_runs_tiny(command, workdir):
    if "../shared/datasets" in command and not os.path.isdir(SHARED_DATASETS):
        pytest.skip(f"no {SHARED_DATASETS}")
    env = _env(workdir)
    started, output = _start_as_written(_argv(command), workdir, env)
    assert started, output[-4000:]
    assert "Traceback" not in output and "should be None when the loss_type is CE" not in output

    done = subprocess.run(_tiny(_argv(command)), cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "test result" in done.stdout + done.stderr

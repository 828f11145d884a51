"""Logs written to a file or a pipe hold no ANSI colour codes (compat shim 17, issue 23); a terminal keeps them."""

import io
import logging
import os
import subprocess
import sys

import colorlog
import recbole.utils
from recbole.utils import set_color

import recbole_sprint  # noqa: F401  (shims)
from recbole_sprint.compat import plain_console_handlers

from .conftest import REPO
from .test_run_recbole_sprint import TINY_ARGS


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _logger(stream):
    logger = logging.Logger("plain_logs_test", level=logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(colorlog.ColoredFormatter("%(log_color)s%(asctime)-15s %(levelname)s  %(message)s"))
    logger.addHandler(handler)
    return logger


def test_console_handler_off_a_terminal_writes_plain_text():
    pipe, terminal = io.StringIO(), _Terminal()
    for stream in (pipe, terminal):
        logger = _logger(stream)
        plain_console_handlers(logger)
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, set_color("train loss", "blue") + ": 1.0",
                                   None, None)
        logger.handlers[0].handle(record)  # the handler itself (another test may have called logging.disable)
    assert "\x1b[" not in pipe.getvalue() and "INFO  train loss: 1.0" in pipe.getvalue()
    assert "\x1b[" in terminal.getvalue()  # a terminal keeps RecBole's colours


def test_recbole_init_logger_is_wrapped():
    assert getattr(recbole.utils.init_logger, "recbole_sprint_shim", False)
    assert getattr(recbole.utils.logger.init_logger, "recbole_sprint_shim", False)


def test_main_job_output_to_a_pipe_has_no_colour_codes(tmp_path):
    """As in a redirected run or a Ray trial's log: the console output of a real (tiny) run is plain text."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    run = subprocess.run([sys.executable, os.path.join(REPO, "run_recbole_sprint.py"), "--model=SASRecSPRINT",
                          "--dataset=ml-100k", *TINY_ARGS, f"--checkpoint_dir={tmp_path / 'saved'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert "train loss" in output and "test result" in output
    assert "\x1b[" not in output

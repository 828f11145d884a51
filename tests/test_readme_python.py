"""README's "Using it from Python" example: trains, reloads the best checkpoint with load_data_and_model and
prints each user's top-10 items (issue 23). Run as written, with a tiny model in place of its 5 epochs."""

import ast
import os
import re
import subprocess
import sys

from .conftest import REPO

AS_WRITTEN = '{"epochs": 5}'
TINY = '{"epochs": 1, "n_layers": 1, "hidden_size": 16, "inner_size": 32, "log_flops": False, "show_progress": False}'


def readme_python():
    with open(os.path.join(REPO, "README.md")) as handle:
        blocks = re.findall(r"```python\n(.*?)```", handle.read(), flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_readme_python_example_reloads_the_checkpoint_and_ranks_items(tmp_path):
    code = readme_python()
    assert "load_data_and_model(" in code and "full_sort_topk(" in code and AS_WRITTEN in code
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    run = subprocess.run([sys.executable, "-c", code.replace(AS_WRITTEN, TINY)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert "tailexposure@10" in lines[0] and "historyshare@10" in lines[0]  # the plugin models' default metrics
    top = re.findall(r"\[([^\[\]]+)\]", "\n".join(lines[1:]))
    assert len(top) == 2 and all(len(row.split()) == 10 for row in top), run.stdout[-1000:]
    assert all(ast.literal_eval(item).isdigit() for row in top for item in row.split())  # raw ml-100k item ids

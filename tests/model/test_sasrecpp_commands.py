"""SASRecPP and SASRecPPSPRINT through the plugin's commands on CPU, tiny: the benchmark (``python -m
recbole_sprint.benchmark``'s main on a spec in a temporary folder, with the authors' optimiser settings) and the
local tune command (``python -m recbole_sprint.tune --backend=local``'s main). run_recbole_sprint.py: see
test_sasrecpp.py / test_sasrecppsprint.py (the main-job tests)."""

import json
import os

import yaml

from recbole_sprint.benchmark.__main__ import main as benchmark_main
from recbole_sprint.tune import common

from ..tune.search_files import read_csv, tiny_search_files

OPTIMISATION = {"lr_scheduler": "linear", "lr_warmup_ratio": 0.05, "clip_grad_norm": {"max_norm": 1.0}, "tf32": True}


def test_benchmark_trains_the_sasrecpp_rows_and_renders_the_gain_row(tiny, tmp_path):
    config = {key: value for key, value in tiny(user_inter_num_interval="[0,30]", metric_decimal_place=12).items()
              if key not in ("checkpoint_dir", "seed")}  # the runner sets both per run
    spec = {
        "name": "sasrecpp_tiny",
        "models": [  # the baseline row trains SASRecPP itself here (the paper specs: SASRecPPSPRINT at weight 0)
            {"name": "SASRecPP", "label": "SASRec++", "config": OPTIMISATION},
            {"name": "SASRecPPSPRINT", "label": "SASRec++-SPRINT",
             "config": {"sprint_attn_weight": 5.0, "sprint_ffn_weight": 0.1, "sprint_emb_weight": 0.0,
                        "sprint_temperature": 4.0, **OPTIMISATION}},
        ],
        "datasets": ["ml-100k"],
        "seeds": [7],
        "config": {**config, "train_mode": "full_sequence", "loss_type": "BCE", "num_negatives": 8,
                   "train_batch_size": 64, "learner": "adamw", "weight_decay": 0.1},
        "table": {"metrics": ["ndcg@10", "recall@10"]},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert benchmark_main([str(path), "--output_dir", str(out)]) == 0
    with open(out / "runs.jsonl") as handle:
        records = {record["model"]: record for record in map(json.loads, handle)}
    assert set(records) == {"SASRec++", "SASRec++-SPRINT"}
    for record in records.values():
        assert 0 < record["test_result"]["ndcg@10"] <= record["test_result"]["recall@10"] <= 1
        assert record["config"]["lr_scheduler"] == "linear" and record["config"]["tf32"] is True
    assert (records["SASRec++"]["model_class"], records["SASRec++-SPRINT"]["model_class"]) == ("SASRecPP",
                                                                                                "SASRecPPSPRINT")
    table = (out / "table.md").read_text()
    assert "| SASRec++-SPRINT |" in table and "↳ gain vs SASRec++" in table


def test_local_tune_searches_sasrecpp_and_sasrecppsprint(tiny, tmp_path, capsys):
    config_file, _ = tiny_search_files(tmp_path, tiny, "", n_users=60)
    for model, space in (("SASRecPP", "learning_rate grid [0.01]"), ("SASRecPPSPRINT", "sprint_attn_weight grid [5.0]")):
        hyper, out = tmp_path / f"{model}.hyper", tmp_path / f"out_{model}"
        hyper.write_text(space + "\n")
        argv = ["--backend=local", f"--model={model}", "--dataset=ml-tiny", f"--params_file={hyper}",
                "--num_samples=1", f"--config_files={config_file}", f"--output_dir={out}", "--max_epochs=1"]
        assert common.main(argv) == 0
        (row,) = read_csv(os.path.join(out, "trials.csv"))
        assert row["status"] == "completed" and 0 <= float(row["test_ndcg@10"]) <= 1
        assert yaml.safe_load((out / "best_config.yaml").read_text())["model"] == model
    capsys.readouterr()

"""The SASRec++ rows of the paper specs: the baseline is SASRecPPSPRINT with every weight 0, SASRec++-SPRINT has the
authors' weights, both train with the authors' optimiser settings; adding them changed no stored run id."""

import json
import os

import pytest

from recbole_sprint.benchmark import load_spec
from recbole_sprint.benchmark.spec import select_cells
from recbole_sprint.benchmark.tables import backbone_of

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = os.path.join(REPO, "recbole_sprint", "properties", "benchmark")
RESULTS = os.path.join(REPO, "benchmarks", "results")
AUTHORS_OPTIMISATION = {"lr_scheduler": "linear", "lr_warmup_ratio": 0.05, "clip_grad_norm": {"max_norm": 1.0},
                        "tf32": True}


@pytest.fixture(autouse=True)
def from_the_repository(monkeypatch):
    monkeypatch.chdir(REPO)
    if not os.path.isdir(os.path.join(REPO, "..", "shared", "datasets", "ml-1m-3k")):
        pytest.skip("../shared/datasets is not next to this checkout")


@pytest.mark.parametrize("name, cells_per_dataset", [("paper_main", 4), ("paper_depth", 12)])
def test_sasrecpp_rows(name, cells_per_dataset):
    spec = load_spec(os.path.join(SPECS, f"{name}.yaml"))
    for dataset in ("amazon-beauty", "ml-1m-3k"):
        cells = select_cells(spec, models="SASRecPPSPRINT", datasets=dataset)
        assert len(cells) == cells_per_dataset  # 2 rows x seeds (x depths); the pool groups of paper_gpu.sh
        by_label = {cell.model: cell.config for cell in cells}
        assert set(by_label) == {"SASRec++", "SASRec++-SPRINT"}
        baseline, sprint = by_label["SASRec++"], by_label["SASRec++-SPRINT"]
        assert [baseline[f"sprint_{k}_weight"] for k in ("attn", "ffn", "emb")] == [0.0, 0.0, 0.0]
        assert [sprint[f"sprint_{k}_weight"] for k in ("attn", "ffn", "emb")] == [5.0, 0.1, 0.0]
        assert sprint["sprint_temperature"] == 4.0
        for config in (baseline, sprint):
            assert {k: config[k] for k in AUTHORS_OPTIMISATION} == AUTHORS_OPTIMISATION
            assert (config["train_mode"], config["loss_type"], config["learner"]) == ("full_sequence", "BCE", "adamw")
            assert config["inner_size"] == 4 * config["hidden_size"]
    assert backbone_of("SASRec++-SPRINT") == "SASRec++"  # the table's gain row compares the two


@pytest.mark.parametrize("name", ["paper_main", "paper_depth"])
def test_adding_rows_changed_no_stored_run_id(name):
    """Every stored run of the spec is still one of its cells (a run id is a hash of the row's label, dataset, seed,
    variant and config: rows of their own leave the others' ids alone), and the other rows' optimiser settings are
    RecBole's (the options are in the SASRec++ rows' config only)."""
    spec = load_spec(os.path.join(SPECS, f"{name}.yaml"))
    cells = spec.cells()
    with open(os.path.join(RESULTS, name, "runs.jsonl")) as handle:
        stored = {json.loads(line)["run_id"] for line in handle}
    assert stored and stored <= {cell.run_id for cell in cells}
    others = [cell for cell in cells if cell.model_name != "SASRecPPSPRINT"]
    assert others and not any(key in cell.config for cell in others for key in AUTHORS_OPTIMISATION)

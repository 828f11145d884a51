"""The SASRec++ rows of the paper specs: the baseline is SASRecPPSPRINT with every weight 0, SASRec++-SPRINT has the
authors' weights, both train with the authors' optimiser settings; the rows change no other row's run id."""

import os

import pytest
import yaml

from recbole_sprint.benchmark import load_spec
from recbole_sprint.benchmark.spec import parse_spec, select_cells
from recbole_sprint.benchmark.tables import backbone_of

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = os.path.join(REPO, "recbole_sprint", "properties", "benchmark")
AUTHORS_OPTIMISATION = {"lr_scheduler": "linear", "lr_warmup_ratio": 0.05, "clip_grad_norm": {"max_norm": 1.0},
                        "tf32": True}


@pytest.fixture(autouse=True)
def from_the_repository(monkeypatch):
    monkeypatch.chdir(REPO)
    if not os.path.isdir(os.path.join(REPO, "..", "shared", "datasets", "ml-1m-3k")):
        pytest.skip("../shared/datasets is not next to this checkout")


@pytest.mark.parametrize("name, cells_per_dataset", [("paper_main", 6), ("paper_depth", 12)])
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
def test_the_sasrecpp_rows_change_no_other_run_id(name):
    """The spec without its SASRec++ rows has the same cells with the same run ids as the other rows of the shipped
    spec (a run id hashes the row's label, dataset, seed, variant and config: rows of their own leave the others'
    ids alone), and the other rows keep RecBole's optimiser settings (the options are in the SASRec++ rows only) and
    full float32 (the spec pins tf32: false, which the SASRec++ rows override)."""
    path = os.path.join(SPECS, f"{name}.yaml")
    with open(path) as handle:
        raw = yaml.safe_load(handle)
    raw["models"] = [entry for entry in raw["models"] if not (isinstance(entry, dict) and entry["name"] == "SASRecPPSPRINT")]
    without = parse_spec(raw, path).cells()
    others = [cell for cell in load_spec(path).cells() if cell.model_name != "SASRecPPSPRINT"]
    assert others and [cell.run_id for cell in others] == [cell.run_id for cell in without]
    assert not any(key in cell.config for cell in others for key in AUTHORS_OPTIMISATION if key != "tf32")
    assert all(cell.config["tf32"] is False for cell in others)

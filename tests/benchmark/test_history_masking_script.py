"""benchmarks/history_masking.py: one trained model evaluated with and without history masking, plus Pop."""

from tests.benchmark.scripts import load_benchmark_script
from tests.model.recbole_runs import SMALL_ML100K


def test_script_prints_the_same_model_masked_and_unmasked_and_pop(tiny, capsys):
    script = load_benchmark_script("history_masking")
    overrides = {**tiny(**SMALL_ML100K), "train_mode": "full_sequence", "loss_type": "BCE", "num_negatives": 4,
                 "epochs": 2, "train_batch_size": 64}
    overrides.pop("metrics"), overrides.pop("topk"), overrides.pop("valid_metric")  # the script's own
    script.main(["--model=SASRecSPRINT", "--dataset=ml-100k"] + [f"--{k}={v!r}" for k, v in overrides.items()])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header = [name.strip() for name in rows[0]]
    body = {(r[0].strip(), r[1].strip()): dict(zip(header[2:], map(float, r[2:]))) for r in rows[1:]}
    assert set(body) == {("SASRecSPRINT", "no"), ("SASRecSPRINT", "yes"), ("Pop", "yes")}
    unmasked, masked = body[("SASRecSPRINT", "no")], body[("SASRecSPRINT", "yes")]
    assert masked["historyshare@1"] == unmasked["historyshare@1"]  # the same ranking before masking
    assert masked["hit@5"] >= unmasked["hit@5"]  # targets are never masked: no hit is lost
    assert 0 < body[("Pop", "yes")]["hit@5"] < 1

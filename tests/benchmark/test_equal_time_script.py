"""benchmarks/equal_time.py end to end on CPU with a tiny model and a budget that one epoch exhausts."""

import re

from .scripts import load_benchmark_script


def test_each_row_trains_until_the_budget_and_reports_its_best_validation(capsys):
    load_benchmark_script("equal_time").main(["--dataset", "ml-100k", "--device", "cpu", "--max_len", "5",
                                              "--n_layers", "1", "--hidden_size", "8", "--n_heads", "1",
                                              "--budget", "0.01", "--batch_size", "4096"])
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (SASRec prefix|SASRecSPRINT w0 full) \| (\d+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| (\d+) \|$",
                      out, re.M)
    assert [r[0] for r in rows] == ["SASRec prefix", "SASRecSPRINT w0 full"]
    for _, epochs, trained, best, at, evaluations in rows:
        # the first epoch already exceeds a 0.01 s budget: one epoch, one validation, its score is the best
        # (seconds print with 2 decimals: with 1, a one-step epoch of ~0.04 s printed 0.0 and failed here)
        assert int(epochs) == 1 and int(evaluations) == 1 and float(trained) >= 0.01 and float(at) == float(trained)
        assert 0 < float(best) < 1
    curve = re.findall(r"epoch 1: [0-9.]+ s trained, valid NDCG@10 ([0-9.]+)", out)
    assert len(curve) == 2 and [float(c) for c in curve] == [float(r[3]) for r in rows]

"""benchmarks/eval_speed.py: one evaluation per metric list, its time and the rows it put through the model."""

from tests.benchmark.scripts import load_benchmark_script


def test_every_metric_list_is_timed_and_spectral_collapse_costs_no_second_forward_pass(capsys):
    script = load_benchmark_script("eval_speed")
    rows = script.main(["--dataset=ml-100k", "--n_layers=1", "--hidden_size=16", "--max_len=10", "--rounds=2"])
    users = len(next(iter(rows.values()))["data"].dataset)
    assert list(rows) == list(script.METRIC_LISTS) and users > 900
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(script.METRIC_LISTS)  # header + one row per list
    per_user = {label: row["rows"] / users for label, row in rows.items()}
    assert per_user["ranking"] == per_user["+ tail"] == 1.0
    spectral = [label for label in rows if "SpectralCollapse" in label][0]
    assert per_user[spectral] == (users + 16) / users  # the factor check's 8 rows, twice; no second pass
    assert 0 < rows[spectral]["result"]["spectralcollapse"] <= 1
    ndcg = {row["result"]["ndcg@10"] for row in rows.values()}
    assert len(ndcg) == 1  # one model, one ranking, whichever metrics are listed
    assert all(0 < row["best"] < float("inf") for row in rows.values())

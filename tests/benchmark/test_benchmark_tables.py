"""Mean/std, bolding, gain over the backbone and the paired test on hand-made stored results."""

import csv
import math

import pytest

from recbole_sprint.benchmark.stats import mean_std, paired_test, relative_gain
from recbole_sprint.benchmark.tables import backbone_of, build_table, to_latex, to_markdown, write_tables


def record(model, seed, ndcg, pop, cov):
    return {"model": model, "dataset": "toy", "seed": seed, "variant_label": "",
            "test_result": {"ndcg@10": ndcg, "averagepopularity@10": pop, "itemcoverage@10": cov}}


# SASRec ndcg 0.10/0.12/0.14 (mean .12, std .02); SASRecSPRINT .13/.16/.16 (mean .15, std sqrt(.0003));
# GRU4Rec .2 on every seed (best ndcg). AveragePopularity is smaller-is-better: SPRINT's 95 is best.
RECORDS = [
    record("SASRec", 1, 0.10, 100.0, 0.40), record("SASRec", 2, 0.12, 110.0, 0.40), record("SASRec", 3, 0.14, 120.0, 0.40),
    record("SASRecSPRINT", 1, 0.13, 90.0, 0.45), record("SASRecSPRINT", 2, 0.16, 95.0, 0.45),
    record("SASRecSPRINT", 3, 0.16, 100.0, 0.45),
    record("GRU4Rec", 1, 0.20, 200.0, 0.10), record("GRU4Rec", 2, 0.20, 200.0, 0.10), record("GRU4Rec", 3, 0.20, 200.0, 0.10),
]


def make_table():
    return build_table(RECORDS, datasets=["toy"], models=["GRU4Rec", "SASRec", "SASRecSPRINT"], variant_labels=[""],
                       metrics=["ndcg@10", "averagepopularity@10", "itemcoverage@10"], absolute_gain=["itemcoverage"])


def test_mean_std_and_stats_by_hand():
    assert mean_std([0.10, 0.12, 0.14]) == pytest.approx((0.12, 0.02))
    assert mean_std([0.13, 0.16, 0.16]) == pytest.approx((0.15, math.sqrt(0.0003)))
    assert mean_std([3.0]) == (3.0, 0.0)
    assert relative_gain(0.15, 0.12) == pytest.approx(25.0)
    assert relative_gain(95.0, 110.0, smaller_is_better=True) == pytest.approx(100 * 15 / 110)
    assert relative_gain(0.2534, 0.2317, absolute=True) == pytest.approx(2.17)  # the paper's Fair convention
    # differences .03/.04/.02: mean .03, sd .01, t = .03 / (.01 / sqrt 3); df = 2: p = 1 - t / sqrt(2 + t^2)
    t = 0.03 / (0.01 / math.sqrt(3))
    test = paired_test({1: 0.13, 2: 0.16, 3: 0.16}, {1: 0.10, 2: 0.12, 3: 0.14})
    assert test["n"] == 3
    assert test["t"] == pytest.approx(t)
    assert test["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t))  # 0.0351
    # only common seeds are paired; constant differences have no variance
    assert paired_test({1: 0.5, 2: 0.6, 9: 0.1}, {1: 0.4, 2: 0.5})["n"] == 2
    assert math.isnan(paired_test({1: 0.5, 2: 0.6}, {1: 0.4, 2: 0.5})["p_value"])


def test_gain_row_says_when_the_rows_share_too_few_seeds_for_a_test():
    records = [record("HSTU", 43, 0.14, 100.0, 0.4), record("HSTUSPRINT", 42, 0.10, 100.0, 0.4),
               record("SASRec", 1, 0.10, 100.0, 0.4), record("SASRec", 2, 0.12, 100.0, 0.4),
               record("SASRecSPRINT", 2, 0.13, 90.0, 0.45), record("SASRecSPRINT", 3, 0.16, 90.0, 0.45)]
    table = build_table(records, datasets=["toy"], models=["HSTU", "HSTUSPRINT", "SASRec", "SASRecSPRINT"],
                        variant_labels=[""], metrics=["ndcg@10"])
    markdown = to_markdown(table)
    assert "| ↳ gain vs HSTU | -28.57% (p=n/a: 0 shared seeds) |" in markdown  # seeds 42 and 43: unpaired means
    # over the shared seed 2 (.13 vs .12), as the test pairs: not the means of all seeds (.145 vs .11, +31.82%)
    assert "| ↳ gain vs SASRec | +8.33% (p=n/a: 1 shared seed) |" in markdown


def test_table_cells_bold_and_gains():
    table = make_table()
    rows = {row.model: row for row in table.rows}
    assert rows["SASRec"].stats[("toy", "ndcg@10")].mean == pytest.approx(0.12)
    assert rows["SASRec"].stats[("toy", "ndcg@10")].std == pytest.approx(0.02)
    # bold: the largest ndcg, the SMALLEST average popularity, the largest coverage
    assert rows["GRU4Rec"].best == {("toy", "ndcg@10")}
    assert rows["SASRecSPRINT"].best == {("toy", "averagepopularity@10"), ("toy", "itemcoverage@10")}
    assert rows["SASRec"].best == set()
    # gains only for the SPRINT model, against its own backbone (not against the best baseline GRU4Rec)
    assert backbone_of("SASRecSPRINT") == "SASRec" and backbone_of("BERT4RecSPRINT") == "BERT4Rec"
    assert backbone_of("SASRec") is None and rows["SASRec"].gains == {}
    assert backbone_of("SASRecSPRINT-tuned") == "SASRec" and backbone_of("SPRINT-x") is None  # labelled rows
    assert backbone_of("SASRec++-SPRINT") == "SASRec++" and backbone_of("SASRec++-SPRINT-tuned") == "SASRec++"
    assert backbone_of("SASRec++") is None and backbone_of("-SPRINT") is None and backbone_of("X-SPRINTER") is None
    gains = rows["SASRecSPRINT"].gains
    assert rows["SASRecSPRINT"].backbone == "SASRec"
    assert gains[("toy", "ndcg@10")]["gain"] == pytest.approx(25.0)
    assert gains[("toy", "averagepopularity@10")]["gain"] == pytest.approx(100 * 15 / 110)  # better = positive
    assert gains[("toy", "itemcoverage@10")]["gain"] == pytest.approx(5.0)  # percentage points
    assert gains[("toy", "ndcg@10")]["p_value"] == pytest.approx(0.0351, abs=1e-4)
    # popularity differences -10/-15/-20: same |t| as the ndcg ones, so the same p
    assert gains[("toy", "averagepopularity@10")]["p_value"] == pytest.approx(0.0351, abs=1e-4)

    markdown = to_markdown(table)
    assert "| GRU4Rec | **0.2000 ± 0.0000** | 200.00 ± 0.00 | 0.1000 ± 0.0000 |" in markdown
    assert "| SASRecSPRINT | 0.1500 ± 0.0173 | **95.00 ± 5.00** | **0.4500 ± 0.0000** |" in markdown
    assert "| ↳ gain vs SASRec | +25.00% (p=0.035)* | +13.64% (p=0.035)* | +5.00pp (p=n/a) |" in markdown
    assert "averagepopularity@10 ↓" in markdown and "ndcg@10 ↑" in markdown
    latex = to_latex(table)
    for needle in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){2-4}", r"\multicolumn{3}{c}{toy}",
                   r"\textbf{95.00 $\pm$ 5.00}", r"\textbf{0.2000 $\pm$ 0.0000}", r"+25.00\% (p=0.035)*"):
        assert needle in latex, needle


def test_csv_round_trip(tmp_path):
    paths = write_tables(make_table(), str(tmp_path / "table"))
    with open(paths["csv"]) as f:
        rows = {row["model"]: row for row in csv.DictReader(f)}
    assert float(rows["SASRec"]["toy/ndcg@10/mean"]) == pytest.approx(0.12)
    assert float(rows["SASRecSPRINT"]["toy/ndcg@10/std"]) == pytest.approx(math.sqrt(0.0003))
    assert int(rows["SASRecSPRINT"]["toy/ndcg@10/n"]) == 3
    assert float(rows["SASRecSPRINT"]["toy/ndcg@10/gain"]) == pytest.approx(25.0)
    assert rows["SASRecSPRINT"]["backbone"] == "SASRec"
    assert rows["GRU4Rec"]["toy/ndcg@10/gain"] == ""


def test_rendered_table_warns_about_runs_evaluated_without_history_masking(tmp_path):
    from types import SimpleNamespace

    from recbole_sprint.benchmark.report import render

    spec = SimpleNamespace(
        table={"metrics": ["ndcg@10"]}, datasets=[("toy", None, {})],
        models=[("GRU4Rec", {}), ("SASRec", {}), ("SASRecSPRINT", {})], variants=lambda: [{}], scaling=None,
    )
    masked = [{**r, "eval_exclude_history": True} for r in RECORDS]
    render(spec, masked, str(tmp_path / "masked"))
    assert "Not comparable" not in (tmp_path / "masked" / "table.md").read_text()
    # two stored before the option existed (no key), one with it off
    mixed = [dict(r) for r in RECORDS[:2]] + [{**RECORDS[2], "eval_exclude_history": False}] + masked[3:]
    render(spec, mixed, str(tmp_path / "mixed"))
    text = (tmp_path / "mixed" / "table.md").read_text()
    assert text.startswith("> **Not comparable:** 3 of 9 runs")
    assert "| SASRec |" in text  # the table itself follows

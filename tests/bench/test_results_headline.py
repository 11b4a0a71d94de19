"""docs/results.md's tables of a dataset (headline, seeded ablations, stage-2 learning curve), generated from the
benchmark's rows and paired tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.report import results_ablations, results_curve, results_headline, stage2_curve, write_report  # noqa: E402


def _row(model, seed, recall, mrr, unseen=None):
    row = {"model": model, "dataset": "amazon-beauty", "seed": seed, "recall@20": recall, "mrr@20": mrr}
    if unseen:
        row["unseen_recall@20"], row["unseen_mrr@20"] = unseen
    return row


def _test(vs, metric, rel, p, ci_has_zero=False, seeds="3 / 3"):
    return {"vs": vs, "metric": metric, "rel %": rel, "Wilcoxon p": p, "95% CI of diff": "[-0.0002, +0.0020]",
            "ci_has_zero": ci_has_zero, "seeds": seeds}


ROWS = [_row("TPAD", 1, 0.12, 0.030, (0.13, 0.050)), _row("TPAD", 2, 0.13, 0.034, (0.13, 0.054)), _row("TPAD", 3, 0.14, 0.032),
        _row("TPAD-no_transition", 1, 0.11, 0.031),
        _row("SASRec", 1, 0.10, 0.030, (0.12, 0.040)), _row("SASRec", 2, 0.12, 0.030),
        _row("STAMP", 1, 0.09, 0.036), _row("NARM", 1, 0.09, 0.020), {"model": "KDSR", "seed": 1, "error": "exit 1"}]
PAIRED = [_test("SASRec", "mrr@20", "+6.7%", "0.001"), _test("SASRec", "recall@20", "+20.0%", "1e-05"),
          _test("SASRec", "unseen_mrr@20", "+30.0%", "0.02", seeds="1 / 1"),
          _test("STAMP (best other stock model)", "mrr@20", "-11.1%", "0.3", ci_has_zero=True)]


def test_the_headline_has_each_headline_model_and_the_best_other_with_tpads_gains():
    text = results_headline(ROWS, PAIRED, best_other="STAMP",
                            ablations=[{"row": "TPAD-no_transition", "metric": "recall@20", "rel %": "+18.2%",
                                        "Wilcoxon p": "no per-session files"}])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    # NARM (neither headline nor the best other) and the failed KDSR are left out
    assert list(lines) == ["model", "**TPAD**", "TPAD, transition score off (same models)", "SASRec",
                           "STAMP (best other stock model)"]
    assert "| **TPAD** | 3 | 0.1300 +- 0.0100 | 0.0320 +- 0.0020 |  |  | 2 | 0.1300 +- 0.0000 | 0.0520 +- 0.0028 |  |" in text
    assert "| 0.1100 | 0.0310 | +18.2% |  | 0 |" in lines["TPAD, transition score off (same models)"]  # one seed: no std
    # SASRec: paired gains; unseen: the ratio of the means (0.052 / 0.04) with the paired p over the seeds that have it
    assert "| +20.0%, p = 1e-05 | +6.7%, p = 0.001 | 1 | 0.1200 | 0.0400 | +8.3% / +30.0% (paired on seeds 1 / 1: p = 0.02) |" in lines["SASRec"]
    assert "-11.1%, p = 0.3 (95% CI of the difference [-0.0002, +0.0020])" in lines["STAMP (best other stock model)"]


def test_without_another_models_unseen_ranking_the_headline_has_no_unseen_columns(tmp_path):
    rows = [row for row in ROWS if row["model"] != "SASRec"]
    assert "unseen" not in results_headline(rows, [], best_other="STAMP").split("\n\n")[1]
    assert results_headline([_row("SASRec", 1, 0.1, 0.03)], []) == ""  # no TPAD row: no table
    results_md = tmp_path / "results.md"  # the report writes it between the dataset's markers
    results_md.write_text("<!-- begin: headline-amazon-beauty -->\nold\n<!-- end: headline-amazon-beauty -->\n")
    write_report(rows, tmp_path / "results", "amazon-beauty", header={"date": "today"}, best_other="STAMP")
    assert "old" not in results_md.read_text() and "| **TPAD** | 3 | 0.1300 +- 0.0100 |" in results_md.read_text()


def _part(part, metric, without, rel, verdict, p):
    with_it = 0.13 if metric == "recall@20" else 0.032  # TPAD's own means, as ablation_rows gives them
    return {"part": part, "row": f"TPAD-no_{part}", "metric": metric, "seeds": "3 / 3", "with it": with_it,
            "without it": without, "rel %": rel, "the part, by seeds": verdict, "Wilcoxon p": p}


def test_the_ablation_table_reads_each_removed_part_in_the_texts_order_and_leaves_added_parts_out():
    ablations = [_part("amie", "mrr@20", 0.031, "-2.2%", "within seed noise", "0.0027"),
                 _part("amie", "recall@20", 0.126, "-0.3%", "within seed noise", "0.047"),
                 _part("distill", "mrr@20", 0.0323, "+0.3%", "within seed noise", "0.0034"),
                 _part("distill", "recall@20", 0.1209, "+4.2%", "helps", "3.5e-09"),
                 _part("session_item_bias", "recall@20", 0.13, "+2.7%", "helps", "0.0004"),
                 _part("session_item_bias", "mrr@20", 0.05, "+51.0%", "helps", "3e-175")]
    text = results_ablations(ablations)
    assert "against TPAD's 0.1300 / 0.0320 (3 seeds)" in text
    table = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert table == ["| stage 2 (`no_distill`: no distilled views, no transition score) | 0.1209 | 0.0323 | +4.2% / +0.3% "
                     "| helps / within seed noise | 3.5e-09 / 0.0034 |",
                     "| AMIE (`no_amie`) | 0.1260 | 0.0310 | -0.3% / -2.2% | within seed noise | 0.047 / 0.0027 |"]
    assert results_ablations(ablations[-2:]) == ""  # an added part alone: nothing for the table


def test_the_learning_curve_table_and_both_blocks_come_from_the_rows(tmp_path):
    rows = [_row(model, seed, recall, 0.03)
            for model, recall in (("TPAD", 0.12), ("TPAD-no_distill", 0.11), ("TPAD-pairs_64", 0.125))
            for seed in (1, 2)]
    for row in rows:
        if row["model"] != "TPAD-no_distill":
            row["stage2_heldout_recall@10_trained"], row["stage2_amie_recall@1"] = 0.1, 0.5
    text = results_curve(stage2_curve(rows, default_pairs=1024))
    assert "| stage-2 pairs | row | seeds | recall@20 | MRR@20 | T's held-out recall@10 | AMIE recall@1 |" in text
    assert "| 0 | TPAD-no_distill | 2 | 0.1100 +- 0.0000 | 0.0300 +- 0.0000 |  |  |" in text
    assert "| 1,024 | TPAD | 2 | 0.1200 +- 0.0000 | 0.0300 +- 0.0000 | 0.1000 +- 0.0000 | 0.5000 +- 0.0000 |" in text
    assert results_curve([]) == ""
    results_md = tmp_path / "results.md"
    results_md.write_text("".join(f"<!-- begin: {name}-amazon-beauty -->\nold\n<!-- end: {name}-amazon-beauty -->\n"
                                  for name in ("ablations", "curve")))
    write_report(rows, tmp_path / "results", "amazon-beauty", header={"date": "today"})
    written = results_md.read_text()
    assert "old" not in written and "| 64 | TPAD-pairs_64 | 2 |" in written
    assert "| stage 2 (`no_distill`: no distilled views, no transition score) | 0.1100 | 0.0300 | +9.1% / +0.0% |" in written

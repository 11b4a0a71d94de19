"""The published anchors table: sources, our rows from the benchmark's CSV, and docs/results.md's block."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.anchors import ANCHORS, anchors_table  # noqa: E402
from bench.report import replace_marked_block, write_report  # noqa: E402


def test_every_anchor_names_its_source_and_a_metric():
    for anchors in ANCHORS.values():
        for anchor in anchors:
            assert "](https://" in anchor["source"] and anchor["training"] and anchor["ranking"]
            assert any(isinstance(anchor.get(m), float) for m in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"))


def test_our_rows_are_the_seed_means_of_the_rows_that_exist():
    rows = [{"model": "SASRec", "seed": s, "recall@10": r, "ndcg@10": 0.04, "recall@20": 0.11, "ndcg@20": 0.05,
             "epochs": 20} for s, r in ((1, 0.08), (2, 0.09))]
    rows += [{"model": "TPAD", "seed": 1, "error": "exit 1"}, {"model": "NARM", "seed": 1, "recall@10": 0.5}]
    table = anchors_table("amazon-beauty", rows)
    ours = [row for row in table if "(ours)" in row["model"]]
    assert [row["model"] for row in ours] == ["**SASRec (ours)**"]  # a failed TPAD and NARM (not an anchor model) left out
    assert abs(ours[0]["recall@10"] - 0.085) < 1e-12 and "2 seed(s)" in ours[0]["source"]
    assert anchors_table("hm-fashion", rows) == []


def test_our_rows_ranked_without_the_sessions_own_items_sit_under_them():
    rows = [{"model": "TPAD", "seed": s, "recall@10": 0.09, "ndcg@10": 0.044, "unseen_recall@10": u,
             "unseen_ndcg@10": 0.06, "epochs": 40} for s, u in ((1, 0.098), (2, 0.100))]
    rows.append({"model": "TPAD", "seed": 3, "recall@10": 0.09, "ndcg@10": 0.044})  # a seed run before those columns
    rows.append({"model": "SASRec", "seed": 1, "recall@10": 0.08, "ndcg@10": 0.04})  # a row without unseen columns
    ours = [row for row in anchors_table("amazon-beauty", rows) if "(ours)" in row["model"]]
    assert [row["model"] for row in ours] == ["**SASRec (ours)**", "**TPAD (ours)**",
                                              "**TPAD (ours), own items removed**"]
    assert abs(ours[2]["recall@10"] - 0.099) < 1e-12 and abs(ours[2]["ndcg@10"] - 0.06) < 1e-12
    assert ours[2]["recall@20"] is None and abs(ours[1]["recall@10"] - 0.09) < 1e-12
    assert "3 seed(s)" in ours[1]["source"] and "2 seed(s)" in ours[2]["source"]
    # each says how it ranks, as the anchors do: RecBole's ranking, then the one of the 'Calculated' anchors
    assert ours[1]["ranking"] != ours[2]["ranking"] == "without the session's items"


def test_the_report_rewrites_the_marked_block_of_results_md(tmp_path):
    results_md = tmp_path / "results.md"
    results_md.write_text("# Results\n<!-- begin: anchors-amazon-beauty -->\nold table\n<!-- end: anchors-amazon-beauty -->\nafter\n")
    rows = [{"model": "SASRec", "dataset": "amazon-beauty", "seed": 1, "recall@10": 0.0824, "recall@20": 0.1176,
             "mrr@20": 0.0302, "ndcg@10": 0.04, "ndcg@20": 0.0495}]
    write_report(rows, tmp_path / "results", "amazon-beauty", header={"date": "today"})
    text = results_md.read_text()
    assert "old table" not in text and "| **SASRec (ours)** | 0.0824 |" in text and text.endswith("after\n")
    assert "| without the user's seen items |" in text and "filter_viewed=True" in text
    assert "arXiv:2508.06450" in (tmp_path / "results" / "amazon-beauty.md").read_text()
    assert not replace_marked_block(results_md, "anchors-hm-fashion", "x")  # no markers: untouched

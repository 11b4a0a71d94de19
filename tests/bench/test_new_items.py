"""The new-item protocol on the tiny fixture: TPAD ranks withheld items it never trained on, SASRec cannot."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import new_items  # noqa: E402
from tests.stages.stage_keys import STAGE_KEYS  # noqa: E402


def test_protocol_withholds_items_and_ranks_them_after_adding_them_back(tiny_dataset, tmp_path):
    root, config_dict = tiny_dataset
    overrides = {k: v for k, v in config_dict.items() if k not in ("data_path", "checkpoint_dir")}
    overrides.update(STAGE_KEYS, feature_cache_dir=str(tmp_path / "cache"), views=["id", "text"])
    rows = new_items.run("tiny", ["TPAD", "SASRec"], fraction=0.2, work_dir=tmp_path / "work", data_path=str(root),
                         overrides=overrides, results_file=tmp_path / "new.csv")
    data = tmp_path / "work" / "data" / "tiny"
    withheld = {line.split("\t")[0] for line in (data / "tiny.all.item").read_text().splitlines()[1:]} - {
        line.split("\t")[0] for line in (data / "tiny.item").read_text().splitlines()[1:]}
    assert len(withheld) == 6  # 20% of 30
    assert not withheld & {line.split("\t")[1] for line in (data / "tiny.inter").read_text().splitlines()[1:]}
    by = {(row["model"], row["targets"]): row for row in rows}
    assert by[("TPAD", "new")]["items_added"] == 6 and by[("TPAD", "new")]["sessions"] > 0
    assert by[("SASRec", "new")]["recall@20"] == 0 and "cannot" in by[("SASRec", "new")]["note"]
    assert all(np.isfinite(row["mrr@20"]) for row in rows)
    assert (tmp_path / "new.csv").read_text().startswith("model,targets,sessions")

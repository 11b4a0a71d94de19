"""Recommendations from saved checkpoints: the API equals the model's own ranking, the command line, bad input, new items."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config, write_tiny_dataset
from recbole_tpad.errors import ConfigError
from recbole_tpad.quick_start import run_recbole_tpad
from recbole_tpad.recommend import load_recommender
from recbole_tpad.recommend.__main__ import main
from recbole_tpad.recommend.sidecar import sidecar_path
from tests.stages.stage_keys import STAGE_KEYS

SETTINGS = {
    "SASRec": {},
    "KDSR": {**STAGE_KEYS, "embedding_size": 16, "n_sub_vectors": 4, "n_codes": 4, "kmeans_pairs": 2000, "n_pairs": 256},
    # the frozen text-view neighbours dominate: a new copy of the session's item must come first
    "TPAD": {**STAGE_KEYS, "views": ["id", "text", "image"], "neighbour_views": ["text"], "neighbour_scale": 50.0},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each model trained one epoch on the tiny dataset: ``{name: (checkpoint, run result)}``, and the data folder."""
    tmp = tmp_path_factory.mktemp("recommend")
    folder = write_tiny_dataset(str(tmp / "data"))
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        for name, settings in SETTINGS.items():
            config_dict = tiny_config(tmp / "data", tmp, feature_cache_dir=str(tmp / "cache"), **settings)
            result = run_recbole_tpad(name, "tiny", config_dict=config_dict)
            runs[name] = (result["trainer"].saved_model_file, result)
    return runs, folder


@pytest.mark.parametrize("name", list(SETTINGS))
def test_topk_equals_the_models_full_sort_ranking(trained, name):
    runs, _ = trained
    model_file, result = runs[name]
    model, test_data = result["model"].eval(), result["test_data"]
    interaction = next(iter(test_data))[0]
    item_seq, item_seq_len = interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        expected = model.full_sort_predict(interaction).view(len(item_seq), -1)
    expected[:, 0] = -np.inf
    top_scores, top_ids = expected.topk(5, dim=1)

    recommender = load_recommender(model_file, device="cpu")
    tokens = recommender.tokens
    sessions = [[tokens[i] for i in seq[:n].tolist()] for seq, n in zip(item_seq, item_seq_len)]
    got = recommender.recommend(sessions, topk=5, batch_size=7)
    assert [r.items for r in got] == [[tokens[i] for i in row] for row in top_ids.tolist()]
    assert np.allclose([r.scores for r in got], top_scores.numpy(), atol=1e-5)


def test_cli_writes_json_lines_and_csv(trained, tmp_path, caplog):
    runs, _ = trained
    model_file = runs["TPAD"][0]
    sessions = tmp_path / "sessions.txt"
    sessions.write_text("i001 i002 nope\n\ni003\tunknown1 unknown2\n", encoding="utf-8")
    assert main([f"--model_file={model_file}", f"--sessions={sessions}", "--topk=3", "--exclude_seen",
                 f"--output={tmp_path / 'top.jsonl'}"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "top.jsonl").read_text().splitlines()]
    assert [row["session"] for row in rows] == [1, 2, 3]
    assert len(rows[0]["items"]) == 3 and not {"i001", "i002"} & set(rows[0]["items"]) and rows[0]["unknown"] == ["nope"]
    assert rows[1]["items"] == [] and "no item" in rows[1]["note"]
    assert "Skipped 3 unknown item tokens in 2 of 3 sessions" in caplog.text
    assert main([f"--model_file={model_file}", f"--sessions={sessions}", "--topk=2", f"--output={tmp_path / 'top.csv'}"]) == 0
    lines = (tmp_path / "top.csv").read_text().splitlines()
    assert lines[0] == "session,items,scores" and len(lines) == 4 and len(lines[1].split(",")[1].split()) == 2


def test_bad_input_exits_2_with_a_message_naming_the_file(trained, tmp_path, capsys):
    runs, _ = trained
    sessions = tmp_path / "sessions.txt"
    sessions.write_text("i001 i002\n", encoding="utf-8")
    assert main([f"--model_file={tmp_path / 'missing.pth'}", f"--sessions={sessions}"]) == 2
    assert "missing.pth: no such checkpoint" in capsys.readouterr().err

    # a checkpoint with another run's sidecar
    sasrec = tmp_path / "SASRec-x.pth"
    shutil.copyfile(runs["SASRec"][0], sasrec)
    shutil.copyfile(sidecar_path(runs["KDSR"][0]), sidecar_path(sasrec))
    assert main([f"--model_file={sasrec}", f"--sessions={sessions}"]) == 2
    assert "belongs to checkpoint KDSR" in capsys.readouterr().err
    sidecar_path(sasrec).write_bytes(b"not a sidecar")
    assert main([f"--model_file={sasrec}", f"--sessions={sessions}"]) == 2
    assert f"{sidecar_path(sasrec)} is damaged" in capsys.readouterr().err
    sidecar_path(sasrec).unlink()
    assert main([f"--model_file={sasrec}", f"--sessions={sessions}"]) == 2
    assert "has no sidecar" in capsys.readouterr().err

    other = tmp_path / "other.txt"
    other.write_text("B00X B00Y\nB00Z\n", encoding="utf-8")  # another dataset's sessions
    assert main([f"--model_file={runs['SASRec'][0]}", f"--sessions={other}"]) == 2
    assert "none of its 2 sessions has an item of dataset 'tiny'" in capsys.readouterr().err


def write_new_items(folder, tmp_path):
    """The tiny .item file plus ``n000`` (a copy of i005: same text and photo) and ``n001`` (a new title)."""
    folder = Path(folder)
    lines = (folder / "tiny.item").read_text().splitlines()
    copy = next(line for line in lines if line.startswith("i005")).replace("i005", "n000", 1)
    fresh = lines[1].replace("i000", "n001", 1).replace("Black Dress 0", "Green Hat 99")
    new = tmp_path / "new"
    shutil.copytree(folder / "images", new / "images")
    (new / "tiny.item").write_text("\n".join(lines + [copy, fresh]) + "\n", encoding="utf-8")
    return new / "tiny.item"


def test_tpad_scores_new_items_through_the_knowledge_mllm(trained, tmp_path):
    runs, folder = trained
    recommender = load_recommender(runs["TPAD"][0], device="cpu")
    n_items = recommender.n_items
    item_file = write_new_items(folder, tmp_path)
    assert recommender.add_items(item_file) == ["n000", "n001"]
    model = recommender.model
    assert model.n_items == n_items + 2 and model.item_embedding.weight.shape[0] == n_items + 2
    for name in ("view_text", "view_image", "neighbour_text", "successor", "successor_target"):
        rows = getattr(model, name)[-2:]
        assert torch.isfinite(rows).all() and rows.abs().sum() > 0
    # the copy of i005 gets i005's successor views: T and its head encode it as stage 3 did the catalogue
    i005 = recommender.token_ids["i005"]
    for name in ("successor", "successor_target"):
        torch.testing.assert_close(getattr(model, name)[-2], getattr(model, name)[i005], rtol=0, atol=1e-5)
    # by content alone (no transition term: what follows i005 is another item), the copy of i005 comes first after i005
    model.transition_score = False
    top = recommender.recommend([["i005"], ["i003", "i004", "i005"]], topk=3, exclude_seen=True)
    assert [r.items[0] for r in top] == ["n000", "n000"]


def _cached_views(recommender):
    from recbole_tpad.features import read_cache

    where = recommender.sidecar["item_views"]
    return read_cache(where["folder"], where["key"])


@pytest.mark.parametrize("name", ["TPAD", "KDSR"])
def test_an_item_encoded_as_new_has_its_catalogue_views(trained, tmp_path, name):
    """TPAD: item states + the top layers under K, as stage 3 encoded the catalogue; KDSR: the base
    backbone, as the feature cache did. A copy of i005 added as new gets i005's views."""
    from recbole_tpad.recommend.new_items import encode_new_items

    runs, folder = trained
    recommender = load_recommender(runs[name][0], device="cpu")
    catalogue = _cached_views(recommender)
    assert (catalogue.manifest["adapter"] == "K") == (name == "TPAD")
    views, image_mask = encode_new_items(recommender.config, recommender.views_manifest,
                                         recommender.sidecar["knowledge_mllm"], write_new_items(folder, tmp_path), ["n000"])
    row = recommender.token_ids["i005"]
    assert image_mask.tolist() == [bool(catalogue.image_mask[row])] == [True]
    for view in ("text", "image", "fused"):  # equal on this fixture; 1e-5 leaves room for other batch shapes
        np.testing.assert_allclose(views[view][0], catalogue.views[view][row], rtol=0, atol=1e-5)


def test_kdsr_scores_new_items_through_its_modality_teachers(trained, tmp_path):
    runs, folder = trained
    recommender = load_recommender(runs["KDSR"][0], device="cpu")
    model, n_items = recommender.model, recommender.n_items
    assert recommender.add_items(write_new_items(folder, tmp_path)) == ["n000", "n001"]
    assert model.n_items == n_items + 2 and model.item_embedding.weight.shape[0] == n_items + 2
    row = recommender.token_ids["i005"]
    for modality in model.modalities:  # the copy of i005 starts where i005 started: its teacher row
        teacher = model.correlation.teachers[modality].teacher
        assert torch.allclose(model.modality_embedding[modality].weight[-2], teacher[row], atol=1e-3)
    assert model.modality_mask[-2:].tolist() == [[False] + [True] * len(model.modalities)] * 2  # no trained ID row
    items = model.item_representations()
    assert torch.isfinite(items).all() and items[0, -2:].abs().sum() > 0
    top = recommender.recommend([["i003", "i004", "i005"]], topk=recommender.n_items)
    assert {"n000", "n001"} <= set(top[0].items)


def test_id_models_say_they_cannot_score_new_items(trained, tmp_path):
    runs, folder = trained
    with pytest.raises(ConfigError, match="cannot score items that were not"):
        load_recommender(runs["SASRec"][0], device="cpu").add_items(write_new_items(folder, tmp_path))

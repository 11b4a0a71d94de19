"""Damaged atomic files, offline runs and determinism of the runner on a stock model."""

import socket

import pytest

from recbole_tpad.data.atomic_check import check_dataset_files
from recbole_tpad.quick_start import load_config, run_recbole_tpad


def test_unknown_items_and_bad_utf8_are_counted_and_survived(tiny_dataset, caplog):
    root, config = tiny_dataset
    folder = root / "tiny"
    with open(folder / "tiny.inter", "a") as f:
        f.write("s500\tghost1\t1\ns500\tghost2\t2\ns500\ti001\t3\n")
    with open(folder / "tiny.item", "ab") as f:
        f.write(b"i900\tBad \xff\xfe title\tWomen\tBrandX\t\n")
    notes = check_dataset_files(load_config("GRU4Rec", "tiny", config_dict=config))
    assert any("1 lines not valid utf-8" in n for n in notes)
    assert any("2 of" in n and "2 items missing from tiny.item" in n for n in notes)
    run = run_recbole_tpad("GRU4Rec", "tiny", config_dict=dict(config, state="INFO"))
    dataset = run["train_data"].dataset
    assert "ghost1" not in set(dataset.field2id_token["item_id"])  # RecBole dropped them
    assert "missing from tiny.item" in caplog.text


def test_a_row_longer_than_the_header_is_read_as_recbole_reads_it(tiny_dataset, caplog):
    root, config = tiny_dataset
    inter = root / "tiny" / "tiny.inter"
    lines = len(inter.read_text().splitlines())
    inter.write_text(inter.read_text() + "s000\ti001\t999999\t1")  # how RecBole's own test.inter ends
    run_recbole_tpad("GRU4Rec", "tiny", config_dict=dict(config, state="INFO"))
    assert f"tiny.inter:{lines + 1}: 4 fields, the header has 3; RecBole ignores the fields past the header" in caplog.text


def test_runner_never_opens_a_network_connection(tiny_dataset, monkeypatch):
    root, config = tiny_dataset

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    run_recbole_tpad("SASRec", "tiny", config_dict=config)


def test_missing_dataset_folder_is_never_downloaded(tmp_path):
    from recbole.data.dataset import Dataset

    from recbole_tpad.errors import DataError

    with pytest.raises(DataError, match="never downloads"):
        Dataset._download(type("D", (), {"dataset_path": str(tmp_path / "x")})())


@pytest.mark.parametrize("model", ["GRU4Rec", "SASRec"])
def test_same_seed_same_metrics(tiny_dataset, model):
    root, config = tiny_dataset
    config = dict(config, epochs=2)
    first = run_recbole_tpad(model, "tiny", config_dict=config)["test_result"]
    second = run_recbole_tpad(model, "tiny", config_dict=config)["test_result"]
    assert first == second

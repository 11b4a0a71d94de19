"""Item loader: text fields, safe images, RecBole id order; every bad input makes a text-only item."""

import io
import types

import numpy as np
import pytest
from PIL import Image

from recbole_tpad.data.atomic_file import AtomicFileError
from recbole_tpad.errors import ConfigError, DataError
from recbole_tpad.features.config import FeaturesConfig
from recbole_tpad.features.images import open_image, to_rgb
from recbole_tpad.features.items import load_items
from recbole_tpad.features.prompt import format_item_prompt

HEADER = "item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\timage:token\n"


def _jpeg_bytes(size=(40, 30), colour=(200, 30, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_fixture(folder):
    """A dataset folder with one item per kind of trouble; returns the item tokens in id order."""
    images = folder / "images"
    images.mkdir(parents=True)
    (images / "ok.jpg").write_bytes(_jpeg_bytes())
    (images / "truncated.jpg").write_bytes(_jpeg_bytes((200, 200))[:300])
    (images / "empty.jpg").write_bytes(b"")
    (images / "garbage.jpg").write_bytes(b"this is not an image at all" * 10)
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(images / "cmyk.jpg")
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([255, 0, 0] * 256)
    palette.save(images / "palette.png", transparency=0)  # fully transparent -> white
    Image.new("LA", (20, 20), (10, 0)).save(images / "grey_alpha.png")
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(images / "grey16.png")
    Image.new("RGB", (400, 400), (0, 0, 255)).save(images / "huge.png")
    exif_image = Image.new("RGB", (60, 20), (0, 200, 0))
    exif = exif_image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    exif_image.save(images / "rotated.jpg", exif=exif)
    (images / "fallback.png").write_bytes(b"")  # replaced below by a real PNG
    Image.new("RGB", (10, 10), (1, 2, 3)).save(images / "fallback.png")
    rows = [
        ("ok", "Red Shirt", "Women Tops T_shirts_&_Vests", "Acme", "images/ok.jpg"),
        ("truncated", "Cut", "A", "B", "images/truncated.jpg"),
        ("empty", "Empty", "A", "B", "images/empty.jpg"),
        ("garbage", "Garbage", "A", "B", "images/garbage.jpg"),
        ("missing", "Missing", "A", "B", "images/nowhere.jpg"),
        ("escape", "Escape", "A", "B", "../../etc/passwd"),
        ("cmyk", "Cmyk", "A", "B", "images/cmyk.jpg"),
        ("palette", "Palette", "A", "B", "images/palette.png"),
        ("grey_alpha", "Grey", "A", "B", "images/grey_alpha.png"),
        ("grey16", "Grey16", "A", "B", "images/grey16.png"),
        ("huge", "Huge", "A", "B", "images/huge.png"),
        ("rotated", "Rotated", "A", "B", "images/rotated.jpg"),
        ("blank", "", "", "", ""),
        ("onlybrand", "", "", "Lonely_Brand", ""),
        ("fallback", "Fallback", "A", "B", ""),
    ]
    lines = [HEADER.encode()] + ["\t".join(r).encode() + b"\n" for r in rows]
    lines.append(b"badutf\tCaf\xe9 \xff Latte\tDrinks\tX\t\n")
    (folder / "fix.item").write_bytes(b"".join(lines))
    (folder / "fix.inter").write_text("session_id:token\titem_id:token\n")
    return ["[PAD]"] + [r[0] for r in rows] + ["badutf", "not_in_item_file"]


@pytest.fixture
def table(tmp_path):
    folder = tmp_path / "fix"
    tokens = write_fixture(folder)
    config = {"data_path": str(folder), "dataset": "fix", "ITEM_TEXT_FIELDS": ["title", "brand", "categories"],
              "IMAGE_FIELD": "image", "feature_image_max_pixels": 100_000}
    dataset = types.SimpleNamespace(iid_field="item_id", field2id_token={"item_id": np.array(tokens)})
    items = load_items(config, dataset, FeaturesConfig.from_config(config))
    return items, {token: row for row, token in enumerate(tokens)}


def test_rows_follow_recbole_ids_and_text_is_cleaned(table):
    items, row = table
    assert len(items) == 18 and items.records[0].is_pad and items.records[0].item_id == "[PAD]"
    ok = items.records[row["ok"]]
    assert ok.fields == {"title": "Red Shirt", "brand": "Acme", "categories": "Women, Tops, T shirts & Vests"}
    assert format_item_prompt(ok) == "Item: Red Shirt. Brand: Acme. Category: Women, Tops, T shirts & Vests."
    assert items.records[row["badutf"]].fields["title"] == "Caf\ufffd \ufffd Latte"
    assert items.stats["bad_utf8"] == 1
    assert items.stats["missing_row"] == 1 and items.stats["empty_text"] == 1


def test_empty_text_still_gets_a_prompt(table):
    items, row = table
    assert format_item_prompt(items.records[row["blank"]]) == "Item: blank."
    assert format_item_prompt(items.records[row["onlybrand"]]) == "Brand: Lonely Brand."
    assert format_item_prompt(items.records[row["not_in_item_file"]]) == "Item: not_in_item_file."


@pytest.mark.parametrize("name, problem", [
    ("truncated", "image_truncated"), ("empty", "image_empty"), ("garbage", "image_unreadable"),
    ("missing", "image_missing"), ("escape", "image_outside"), ("huge", "image_too_large"),
])
def test_bad_images_make_the_item_text_only(table, name, problem):
    items, row = table
    assert items.load_image(row[name]) is None
    assert items.problems[row[name]] == problem
    assert items.load_image(row[name]) is None and items.stats[problem] == 1  # counted once


def test_escaping_path_never_opened(table, monkeypatch):
    items, row = table
    opened = []
    monkeypatch.setattr("recbole_tpad.features.items.open_image", lambda *a: opened.append(a) or (None, "x"))
    assert items.load_image(row["escape"]) is None and not opened


@pytest.mark.parametrize("name, pixel", [
    ("ok", None), ("cmyk", None), ("palette", (255, 255, 255)), ("grey_alpha", (255, 255, 255)),
    ("grey16", None), ("fallback", (1, 2, 3)),
])
def test_odd_modes_become_rgb(table, name, pixel):
    items, row = table
    image = items.load_image(row[name])
    assert image is not None and image.mode == "RGB"
    if pixel:
        assert image.getpixel((5, 5)) == pixel


def test_exif_rotation_applied(table):
    items, row = table
    assert items.load_image(row["rotated"]).size == (20, 60)


def test_summary_logged(table, caplog):
    items, row = table
    for r in range(len(items)):
        items.load_image(r)
    with caplog.at_level("INFO"):
        items.log_summary()
    text = caplog.text
    assert "image_truncated=1" in text and "image_outside=1" in text and "bad_utf8=1" in text


def test_to_rgb_alpha_on_white():
    image = to_rgb(Image.new("RGBA", (4, 4), (0, 0, 0, 0)))
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_decompression_bomb_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (6000, 6000)).save(path)  # tiny file, 36 M pixels
    assert open_image(path, max_pixels=1_000_000) == (None, "image_too_large")


def test_missing_text_column_is_a_clear_error(tmp_path):
    folder = tmp_path / "fix"
    write_fixture(folder)
    config = {"data_path": str(folder), "dataset": "fix", "ITEM_TEXT_FIELDS": ["nope"], "IMAGE_FIELD": None}
    dataset = types.SimpleNamespace(iid_field="item_id", field2id_token={"item_id": np.array(["[PAD]", "ok"])})
    with pytest.raises(DataError, match="ITEM_TEXT_FIELDS"):
        load_items(config, dataset, FeaturesConfig.from_config(config))


def test_item_file_is_read_as_recbole_reads_it(tmp_path):
    folder = tmp_path / "quoted"
    folder.mkdir()
    lines = ["item_id:token\ttitle:token_seq\tbrand:token", 'a\t"Ace Comb 8"" * Black"\tACE', "b\tPlain\tX\tignored"]
    (folder / "quoted.item").write_text("\n".join(lines) + "\n")
    config = {"data_path": str(folder), "dataset": "quoted", "ITEM_TEXT_FIELDS": ["title", "brand"], "IMAGE_FIELD": None}
    dataset = types.SimpleNamespace(iid_field="item_id", field2id_token={"item_id": np.array(["[PAD]", "a", "b"])})
    items = load_items(config, dataset, FeaturesConfig.from_config(config))
    assert items.records[1].fields == {"title": 'Ace Comb 8" * Black', "brand": "ACE"}  # CSV quoting undone
    assert items.records[2].fields == {"title": "Plain", "brand": "X"}  # the field past the header ignored
    (folder / "quoted.item").write_text("\n".join(lines + ["c\tShort"]) + "\n")
    with pytest.raises(AtomicFileError, match=r"quoted\.item:4: 2 fields, the header has 3"):
        load_items(config, dataset, FeaturesConfig.from_config(config))  # short rows are refused, as by the runner's check


@pytest.mark.parametrize("key, value, match", [
    ("backbone", "gpt5", "feature_backbone"), ("dtype", "fp8", "feature_dtype"),
    ("batch_size", 0, "feature_batch_size"), ("image_encoder", "vit", "feature_image_encoder"),
])
def test_bad_config_fails_naming_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        FeaturesConfig.from_config({f"feature_{key}": value})


def test_mllm_without_path_fails():
    with pytest.raises(ConfigError, match="feature_mllm_path"):
        FeaturesConfig.from_config({"feature_backbone": "mllm"})

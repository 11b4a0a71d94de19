"""Cache keys follow the data's contents: a fresh copy of the same files keeps its caches."""

import os
import shutil

from recbole_tpad.features.cache import data_fingerprint, images_fingerprint


def _dataset(folder):
    (folder / "images").mkdir(parents=True)
    (folder / "toy.inter").write_text("session_id:token\titem_id:token\n1\ta\n")
    (folder / "toy.item").write_text("item_id:token\ttitle:token_seq\na\tred shoe\n")
    (folder / "images" / "a.jpg").write_bytes(b"\xff\xd8photo-a")
    (folder / "images" / "b.jpg").write_bytes(b"\xff\xd8photo-b")
    return folder


def test_a_copy_with_new_mtimes_has_the_same_fingerprint(tmp_path):
    original = _dataset(tmp_path / "one" / "toy")
    copy = tmp_path / "two" / "toy"
    shutil.copytree(original, copy)  # copytree keeps mtimes; move them on explicitly
    for path in (copy / "images").iterdir():
        os.utime(path, (1, 1))
    assert data_fingerprint(original, "toy") == data_fingerprint(copy, "toy")


def test_changed_photo_bytes_change_the_fingerprint(tmp_path):
    folder = _dataset(tmp_path / "toy")
    before = images_fingerprint(folder / "images")
    (folder / "images" / "b.jpg").write_bytes(b"\xff\xd8photo-B")  # same size, other bytes
    assert images_fingerprint(folder / "images") != before

"""A small sample of a dataset for smoke runs: the first sessions, their items and images."""

import shutil
from pathlib import Path

from recbole_tpad.utils import resolve_data_path


def write_sample(dataset, out_root, n_sessions=150, source_root=None):
    """Copy the first ``n_sessions`` sessions of ``dataset`` (found as the runner finds it, or under
    ``source_root``), only their items and those items' images, under ``out_root/<dataset>/``.
    Returns ``out_root``."""
    source = Path(resolve_data_path(dataset, source_root)) / dataset
    target = Path(out_root) / dataset
    target.mkdir(parents=True, exist_ok=True)
    sessions, items = set(), set()
    with open(source / f"{dataset}.inter", encoding="utf-8") as src, open(target / f"{dataset}.inter", "w", encoding="utf-8") as dst:
        header = src.readline()
        dst.write(header)
        columns = [c.split(":")[0] for c in header.rstrip("\n").split("\t")]
        uid, iid = columns.index("session_id"), columns.index("item_id")
        for line in src:
            fields = line.rstrip("\n").split("\t")
            if fields[uid] not in sessions:
                if len(sessions) >= n_sessions:
                    continue
                sessions.add(fields[uid])
            items.add(fields[iid])
            dst.write(line)
    item_file = source / f"{dataset}.item"
    if item_file.is_file():
        with open(item_file, encoding="utf-8") as src, open(target / f"{dataset}.item", "w", encoding="utf-8") as dst:
            dst.write(src.readline())
            for line in src:
                if line.split("\t", 1)[0] in items:
                    dst.write(line)
    if (source / "images").is_dir():
        (target / "images").mkdir(exist_ok=True)
        for image in (source / "images").iterdir():
            if image.stem in items:
                shutil.copyfile(image, target / "images" / image.name)
    return Path(out_root)

"""Make a damaged copy of an atomic dataset with images (issue #7), and check a run's item views on it.

    python bench/damage_dataset.py --out=/work/runs/damaged            # copy + damage hm-fashion
    python bench/damage_dataset.py --check=CACHE_ROOT                  # after a run on the copy

The source is never modified: the atomic files are rewritten into ``OUT/<dataset>/`` and the images
copied there, then a share of the copies is deleted, truncated, emptied, re-saved in CMYK / palette /
alpha modes or in another format than their extension, and one becomes a decompression bomb.
A fifth of the titles are blanked, some descriptions get bytes that are not UTF-8, and interactions
naming items that are not in ``.item`` are added. ``OUT/<dataset>/damage.json`` records what was
done to which item, so a run's log can be checked against it. ``--check`` reads every item-view
cache of the dataset under a cache root and fails unless each holds a finite row for every item.
"""

import argparse
import json
import random
import shutil
import struct
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "datasets" / "hm-fashion"
# Share of the images given each kind of damage (the rest stay intact): 46 % damaged in all.
IMAGE_DAMAGE = {
    "deleted": 0.10,      # -> image_missing
    "truncated": 0.08,    # the first 40 % of the bytes -> image_truncated
    "emptied": 0.06,      # zero bytes -> image_empty
    "garbage": 0.04,      # random bytes -> image_unreadable
    "cmyk": 0.05,         # re-saved as a CMYK JPEG: converted to RGB, still used
    "palette": 0.05,      # a palette PNG under the .jpg name: converted, still used
    "alpha": 0.05,        # an RGBA PNG under the .jpg name: alpha on white, still used
    "other_format": 0.03,  # WebP bytes under the .jpg name: decoded by content, still used
}
BOMB_SIDE = 20_000  # 400 M pixels, above the 40 M default of feature_image_max_pixels; 49 KB on disk


def _bomb_png(path, side=BOMB_SIDE):
    """A valid 1-bit PNG of ``side`` x ``side`` pixels that is tiny on disk (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _damage_image(path, kind, rng):
    from PIL import Image

    if kind == "deleted":
        path.unlink()
    elif kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.4)])
    elif kind == "emptied":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(2048)))
    elif kind == "bomb":
        _bomb_png(path)
    else:
        with Image.open(path) as image:
            image = image.convert("RGB")
        if kind == "cmyk":
            image.convert("CMYK").save(path, format="JPEG")
        elif kind == "palette":
            image.convert("P", palette=Image.Palette.ADAPTIVE).save(path, format="PNG")
        elif kind == "alpha":
            rgba = image.convert("RGBA")
            rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
            rgba.save(path, format="PNG")
        elif kind == "other_format":
            image.save(path, format="WEBP")


def _read_lines(path):
    return path.read_bytes().split(b"\n")


def damage_dataset(source, out, seed=0, blank_title_share=0.2, bad_utf8_items=50, ghost_interactions=400,
                   ghost_items=150):
    """Write the damaged copy into ``out/<name>/`` and return the damage record (also in damage.json)."""
    source, name = Path(source).resolve(), Path(source).name
    target = Path(out).resolve() / name
    if target == source or source in target.parents or REPO in target.parents:
        raise SystemExit(f"--out must be outside the repository and the source dataset, got {target}")
    rng = random.Random(seed)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source / "images", target / "images", copy_function=shutil.copyfile)
    (target / "images").chmod(0o755)  # the source folder may be read-only

    lines = _read_lines(source / f"{name}.item")
    header = lines[0].decode().split("\t")
    columns = [cell.partition(":")[0] for cell in header]
    title, image_col = columns.index("title"), columns.index("image")
    bad_col = columns.index("description") if "description" in columns else title
    rows = [line.split(b"\t") for line in lines[1:] if line.strip()]
    order = list(range(len(rows)))
    rng.shuffle(order)

    record = {"source": str(source), "seed": seed, "items": len(rows), "images": {}, "text": {}}
    cursor = 0
    for kind, share in IMAGE_DAMAGE.items():
        chosen = order[cursor: cursor + max(1, int(share * len(rows)))]
        cursor += len(chosen)
        for index in chosen:
            _damage_image(target / rows[index][image_col].decode(), kind, rng)
        record["images"][kind] = [rows[i][0].decode() for i in chosen]
    bomb = order[cursor]
    _damage_image(target / rows[bomb][image_col].decode(), "bomb", rng)
    record["images"]["bomb"] = [rows[bomb][0].decode()]

    blank = rng.sample(range(len(rows)), int(blank_title_share * len(rows)))
    for index in blank:
        rows[index][title] = b""
    bad = rng.sample(range(len(rows)), bad_utf8_items)
    for index in bad:  # a Latin-1 byte and a lone continuation byte: invalid UTF-8
        rows[index][bad_col] = b"Caf\xe9 \x80 " + rows[index][bad_col]
    record["text"] = {"blank_title": len(blank), "bad_utf8_lines": len(bad)}
    (target / f"{name}.item").write_bytes(b"\n".join([lines[0]] + [b"\t".join(r) for r in rows]) + b"\n")

    inter = [line for line in _read_lines(source / f"{name}.inter") if line.strip()]
    sessions = [line.split(b"\t") for line in inter[1:]]
    for g in range(ghost_interactions):  # ghosts inside real sessions, at a real session's time
        session, _, time = rng.choice(sessions)
        inter.insert(rng.randrange(1, len(inter) + 1), b"\t".join([session, f"ghost{g % ghost_items:04d}".encode(), time]))
    (target / f"{name}.inter").write_bytes(b"\n".join(inter) + b"\n")
    record["inter"] = {"ghost_interactions": ghost_interactions, "ghost_items": min(ghost_items, ghost_interactions)}
    record["summary"] = {kind: len(ids) for kind, ids in record["images"].items()}
    (target / "damage.json").write_text(json.dumps(record, indent=1))
    return record


def check_item_views(cache_root, dataset):
    """Every item-view cache of ``dataset`` under ``cache_root``: rows finite, counts of image problems."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from recbole_tpad.features.cache import read_cache

    folders = sorted((Path(cache_root) / "item_views" / dataset).glob("[!.]*"))
    if not folders:
        raise SystemExit(f"no item-view cache of {dataset} under {cache_root}")
    for folder in folders:
        views = read_cache(folder)  # checks shapes, dtype and finiteness of every view
        if views is None:
            raise SystemExit(f"{folder}: not a valid item-view cache")
        rows = views.manifest["num_items"]
        norms = {name: float(np.abs(array[1:]).sum(1).min()) for name, array in views.views.items()}
        print(f"{folder.name}: adapter={views.manifest.get('adapter')} items={rows - 1} finite=yes "
              f"with_image={int(views.image_mask.sum())} problems={views.manifest.get('problems')} "
              f"min |row| text={norms['text']:.3g} fused={norms['fused']:.3g}")
        if norms["text"] == 0 or norms["fused"] == 0:
            raise SystemExit(f"{folder}: an item has an all-zero text or fused view")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="dataset folder to copy (read only)")
    parser.add_argument("--out", default=None, help="folder that gets <dataset>/ (outside the repository)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", default=None, help="cache root of a run on the copy: check its item views")
    args = parser.parse_args(argv)
    if args.check:
        check_item_views(args.check, Path(args.source).name)
        return 0
    if not args.out:
        parser.error("--out is required to make a damaged copy")
    record = damage_dataset(args.source, args.out, args.seed)
    print(json.dumps({"images": record["summary"], "text": record["text"], "inter": record["inter"]}))
    print(Path(args.out).resolve() / Path(args.source).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Item loader: the text fields and the image of every item, in RecBole's internal id order.

The ``<dataset>.item`` file is read here, with the reader RecBole's files are checked with
(``recbole_tpad.data.atomic_file``), because RecBole's loader keeps only ``load_col`` columns.
Row ``r`` of an :class:`ItemTable` is internal item id ``r``; row 0 is RecBole's ``'[PAD]'``.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from recbole_tpad.data.atomic_file import AtomicFile
from recbole_tpad.errors import DataError
from recbole_tpad.features.images import IMAGE_PROBLEMS, open_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
TEXT_PROBLEMS = ("bad_utf8", "missing_row", "empty_text")


@dataclass
class ItemRecord:
    item_id: str
    fields: dict
    image_path: Path | None = None
    is_pad: bool = False

    @property
    def has_text(self):
        return any(value for value in self.fields.values())


@dataclass
class ItemTable:
    """All items of a dataset, row = internal item id, with the problems met while loading."""

    records: list
    text_fields: list
    folder: Path
    max_pixels: int
    problems: dict = field(default_factory=dict)  # row -> problem kind (one per row and kind group)
    text_problems: Counter = field(default_factory=Counter)

    def __len__(self):
        return len(self.records)

    def load_image(self, row):
        """The RGB image of item ``row``, or None (no image, or a bad one: then counted once)."""
        record = self.records[row]
        if record.image_path is None or self.problems.get(row):
            return None
        image, problem = open_image(record.image_path, self.max_pixels)
        if problem:
            self.problems[row] = problem
        return image

    @property
    def stats(self):
        counts = Counter(self.text_problems)
        counts.update(self.problems.values())
        return dict(counts)

    def log_summary(self, logger=None):
        logger = logger or logging.getLogger()
        counts = self.stats
        with_image = sum(1 for r, rec in enumerate(self.records) if rec.image_path and not self.problems.get(r))
        parts = [f"{kind}={counts[kind]}" for kind in TEXT_PROBLEMS + IMAGE_PROBLEMS if counts.get(kind)]
        logger.info(
            f"Items: {len(self.records) - 1} (+[PAD]), {with_image} with a usable image; "
            + ("problems: " + ", ".join(parts) if parts else "no problems")
        )
        for row, kind in sorted(self.problems.items())[:5]:
            logger.warning(f"Item '{self.records[row].item_id}' is text-only ({kind}): {self.records[row].image_path}")


def _get(config, key, default=None):
    try:
        value = config[key]
    except KeyError:
        return default
    return default if value is None else value


def _clean(value, kind, seq_separator, joiner, max_chars):
    if kind == "token_seq":
        tokens = [t.replace("_", " ").strip() for t in value.split(seq_separator)]
        value = joiner.join(t for t in tokens if t)
    else:
        value = value.replace("_", " ").strip()
    value = " ".join(value.split())
    return value[:max_chars].rstrip()


def _safe_image_path(folder, relative):
    """Absolute path of ``relative`` if it stays inside ``folder``, else None."""
    candidate = (folder / relative).resolve()
    root = folder.resolve()
    if candidate == root or not candidate.is_relative_to(root):
        return None
    return candidate


def load_items(config, dataset, settings):
    """Build the :class:`ItemTable` of ``dataset`` (a RecBole Dataset) from its raw .item file, with
    the run's :class:`FeaturesConfig` ``settings``."""
    folder = Path(_get(config, "data_path"))
    name = _get(config, "dataset")
    item_path = folder / f"{name}.item"
    iid_field = dataset.iid_field
    tokens = list(dataset.field2id_token[iid_field])
    wanted = list(settings.text_fields)  # feature_text_fields, else ITEM_TEXT_FIELDS (FeaturesConfig)
    image_field = _get(config, "IMAGE_FIELD") if settings.use_images else None

    seq_separator = _get(config, "seq_separator", " ")
    rows, columns, bad_lines = {}, {}, 0
    if item_path.is_file():
        item_file = AtomicFile(item_path, _get(config, "field_separator", "\t"), seq_separator,
                               _get(config, "encoding", "utf-8"))
        if item_file.columns[0] != iid_field:
            raise DataError(f"{item_path}: first column is '{item_file.columns[0]}', expected the item id '{iid_field}'.")
        columns = {col_name: (i, kind) for i, (col_name, kind) in enumerate(zip(item_file.columns, item_file.types))}
        for _, fields in item_file.rows():
            rows.setdefault(fields[0], fields)
        bad_lines = item_file.bad_utf8_lines
    absent = [f for f in wanted if f not in columns]
    if item_path.is_file() and absent:
        raise DataError(
            f"{item_path}: text field(s) {absent} named in ITEM_TEXT_FIELDS / feature_text_fields are not "
            f"columns of this file (it has {[c for c in columns if c != iid_field]}); fix the dataset YAML."
        )
    text_fields = [f for f in wanted if f in columns]
    if image_field and image_field not in columns:
        raise DataError(f"{item_path}: IMAGE_FIELD '{image_field}' is not a column; set IMAGE_FIELD: ~ if none.")
    fallback = {}
    images_dir = folder / "images"
    if settings.use_images and images_dir.is_dir():
        for path in sorted(images_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                fallback.setdefault(path.stem, path)

    list_fields = set(settings.list_fields)
    table = ItemTable([], text_fields, folder, settings.image_max_pixels)
    table.text_problems["bad_utf8"] = bad_lines
    for row, token in enumerate(tokens):
        if row == 0:
            table.records.append(ItemRecord(str(token), {f: "" for f in text_fields}, None, True))
            continue
        cells = rows.get(token)
        if cells is None:
            table.text_problems["missing_row"] += 1
            table.records.append(ItemRecord(token, {f: "" for f in text_fields}))
            continue
        values = {}
        for f in text_fields:
            index, kind = columns[f]
            joiner = ", " if f in list_fields else " "
            values[f] = _clean(cells[index], kind, seq_separator, joiner, settings.max_field_chars)
        record = ItemRecord(token, values)
        if not record.has_text:
            table.text_problems["empty_text"] += 1
        relative = cells[columns[image_field][0]].strip() if image_field else ""
        if relative:
            record.image_path = _safe_image_path(folder, relative)
            if record.image_path is None:
                record.image_path = folder / relative
                table.problems[row] = "image_outside"
            elif not record.image_path.is_file():
                table.problems[row] = "image_missing"
        elif token in fallback:
            record.image_path = fallback[token]
        table.records.append(record)
    return table

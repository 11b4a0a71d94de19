"""Validate RecBole atomic files before RecBole reads them, and say what RecBole will drop.

RecBole hands atomic files to pandas, which either fails deep in a traceback or silently turns a
bad value into NaN. This check names the file and line of the first problem instead, counts
lines that are not valid UTF-8 (RecBole reads them with replacement characters, see compat.py)
and interactions whose item is missing from the ``.item`` file (RecBole drops them:
``filter_inter_by_user_or_item``).
"""

from dataclasses import dataclass, field
from pathlib import Path

from recbole_tpad.errors import DataError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
ATOMIC_SUFFIXES = ("inter", "item", "user")


class AtomicFileError(DataError):
    """An atomic file is malformed; the message names the file, line and what to do."""


@dataclass
class AtomicFileReport:
    """What a checked file holds: its column names and the values of one column, if asked."""

    path: Path
    columns: list
    rows: int = 0
    bad_utf8_lines: int = 0
    values: list = field(default_factory=list)


def _check_float(text, is_seq, seq_separator):
    for value in text.split(seq_separator) if is_seq else [text]:
        if value != "":
            float(value)


def _decoded_lines(path, encoding):
    """(line number, text, was valid) for each line; invalid bytes become U+FFFD."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            try:
                yield line_no, raw.decode(encoding), True
            except UnicodeDecodeError:
                yield line_no, raw.decode(encoding, errors="replace"), False


def check_atomic_file(path, field_separator="\t", seq_separator=" ", encoding="utf-8", collect=None):
    """Check the header types, the column count of every row and every float value.

    Returns an ``AtomicFileReport``; ``collect`` names a column whose values it keeps.
    """
    path = Path(path)
    lines = _decoded_lines(path, encoding)
    first = next(lines, None)
    if first is None or not first[1].strip():
        raise AtomicFileError(f"{path}:1: empty file, expected a header of 'name:type' columns.")
    header = first[1].split(field_separator)
    names, types = [], []
    for column in header:
        name, sep, ftype = column.partition(":")
        if not sep or not name or ftype not in ATOMIC_TYPES:
            raise AtomicFileError(
                f"{path}:1: header column '{column}' must be 'name:type' with type one of {', '.join(ATOMIC_TYPES)}."
            )
        names.append(name)
        types.append(ftype)
    report = AtomicFileReport(path, names, bad_utf8_lines=int(not first[2]))
    float_columns = [i for i, t in enumerate(types) if t.startswith("float")]
    keep = names.index(collect) if collect in names else None
    for line_no, text, valid in lines:
        if not text:
            continue
        report.bad_utf8_lines += not valid
        row = text.split(field_separator)
        if len(row) != len(header):
            raise AtomicFileError(
                f"{path}:{line_no}: {len(row)} columns, the header has {len(header)}. "
                "Fix the row (a stray tab or a missing field) or remove it."
            )
        for i in float_columns:
            try:
                _check_float(row[i], types[i] == "float_seq", seq_separator)
            except ValueError:
                raise AtomicFileError(
                    f"{path}:{line_no}: column '{names[i]}' is {types[i]} but holds '{row[i]}'. "
                    "Fix the value or declare the column as token."
                ) from None
        report.rows += 1
        if keep is not None:
            report.values.append(row[keep])
    return report


def check_dataset_files(dataset_dir, dataset, item_field="item_id", field_separator="\t", seq_separator=" ", encoding="utf-8"):
    """Check every atomic file of ``dataset``; return log lines about what will be replaced or dropped."""
    reports = {}
    for suffix in ATOMIC_SUFFIXES:
        path = Path(dataset_dir) / f"{dataset}.{suffix}"
        if path.is_file():
            reports[suffix] = check_atomic_file(path, field_separator, seq_separator, encoding, collect=item_field)
    notes = [f"{r.path.name}: {r.bad_utf8_lines} lines not valid {encoding}, read with replacement characters"
             for r in reports.values() if r.bad_utf8_lines]
    if "inter" in reports and "item" in reports and item_field in reports["item"].columns:
        known = set(reports["item"].values)
        unknown = [v for v in reports["inter"].values if v not in known]
        if unknown:
            notes.append(
                f"{dataset}.inter: {len(unknown)} of {reports['inter'].rows} interactions name "
                f"{len(set(unknown))} items missing from {dataset}.item; RecBole drops them (filter_inter_by_user_or_item)"
            )
    return notes

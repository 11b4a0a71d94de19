"""Validate RecBole atomic files before RecBole reads them.

RecBole hands atomic files to pandas, which either fails deep in a traceback or silently turns a
bad value into NaN. This check names the file and line of the first problem instead.
"""

import csv
from pathlib import Path

from recbole_tpad.errors import DataError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
ATOMIC_SUFFIXES = ("inter", "item", "user")


class AtomicFileError(DataError):
    """An atomic file is malformed; the message names the file, line and what to do."""


def _check_float(text, is_seq, seq_separator):
    values = text.split(seq_separator) if is_seq else [text]
    for value in values:
        if value != "":
            float(value)


def check_atomic_file(path, field_separator="\t", seq_separator=" ", encoding="utf-8"):
    """Check the header types, the column count of every row and every float value."""
    path = Path(path)
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=field_separator, quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header:
            raise AtomicFileError(f"{path}:1: empty file, expected a header of 'name:type' columns.")
        types = []
        for column in header:
            name, sep, ftype = column.partition(":")
            if not sep or not name or ftype not in ATOMIC_TYPES:
                raise AtomicFileError(
                    f"{path}:1: header column '{column}' must be 'name:type' with type one of "
                    f"{', '.join(ATOMIC_TYPES)}."
                )
            types.append(ftype)
        float_columns = [i for i, t in enumerate(types) if t.startswith("float")]
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
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
                        f"{path}:{line_no}: column '{header[i].partition(':')[0]}' is {types[i]} but holds "
                        f"'{row[i]}'. Fix the value or declare the column as token."
                    ) from None


def check_dataset_files(dataset_dir, dataset, field_separator="\t", seq_separator=" ", encoding="utf-8"):
    """Check every atomic file ``<dataset>.<inter|item|user>`` present in ``dataset_dir``."""
    for suffix in ATOMIC_SUFFIXES:
        path = Path(dataset_dir) / f"{dataset}.{suffix}"
        if path.is_file():
            check_atomic_file(path, field_separator, seq_separator, encoding)

"""The one reader of RecBole atomic files (``.inter``, ``.item``, ``.user``), parsing them as RecBole does.

RecBole 1.2.1 (``Dataset._load_feat``) splits the header line on ``field_separator`` and hands the
rows to ``pandas.read_csv(engine="python", usecols=<the header's columns>)``, which parses them
with Python's ``csv`` module (``strict``): a field that starts with ``"`` is quoted (``""`` inside
is one quote; it may hold separators and line breaks), blank lines are skipped, fields past the
header's columns are dropped, and a float column takes pandas' NA strings as missing. This reader
does the same, so validation and the item loader see what RecBole sees; what pandas would misread
or crash on is an :class:`AtomicFileError` naming the file, line, column and what to do.
"""

import csv
import re
from pathlib import Path

from recbole_tpad.errors import DataError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
# pandas' default na_values: read_csv reads them as missing (NaN) instead of failing on them.
NA_STRINGS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


class AtomicFileError(DataError):
    """An atomic file RecBole would misread; the message names the file, line and what to do."""


class AtomicFile:
    """The header of an atomic file, and its rows as RecBole reads them (:meth:`rows`).

    After :meth:`rows` has run, ``bad_utf8_lines`` counts the lines read with replacement
    characters (RecBole reads them the same way, ``compat.py``) and ``long_rows`` holds
    ``(line, fields)`` of the rows with more fields than the header: RecBole drops the extra ones.
    """

    def __init__(self, path, field_separator="\t", seq_separator=" ", encoding="utf-8"):
        self.path = Path(path)
        self.field_separator = field_separator
        self.seq_separator = seq_separator
        self.encoding = encoding
        self.bad_utf8_lines = 0
        self.long_rows = []
        self.columns, self.types = self._read_header()

    def _where(self, line, column=None):
        return f"{self.path}:{line}" + (f", column '{self.columns[column]}'" if column is not None else "")

    def _lines(self):
        """Decoded lines, line ends kept; a line that is not valid text is counted and decoded with U+FFFD."""
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    yield raw.decode(self.encoding)
                except UnicodeDecodeError:
                    self.bad_utf8_lines += 1
                    yield raw.decode(self.encoding, errors="replace")

    def _read_header(self):
        with open(self.path, "rb") as f:
            header = f.readline().decode(self.encoding, errors="replace").rstrip("\r\n")
        if not header.strip():
            raise AtomicFileError(f"{self._where(1)}: empty file, expected a header of 'name:type' columns.")
        columns, types = [], []
        for cell in header.split(self.field_separator):
            name, sep, kind = cell.partition(":")
            if not sep or not name or kind not in ATOMIC_TYPES:
                raise AtomicFileError(
                    f"{self._where(1)}: header column '{cell}' must be 'name:type' with type one of "
                    f"{', '.join(ATOMIC_TYPES)}. Fix the header line."
                )
            columns.append(name)
            types.append(kind)
        return columns, types

    def _split(self, lines):
        if len(self.field_separator) == 1:
            return csv.reader(lines, delimiter=self.field_separator, strict=True)
        return (re.split(self.field_separator, line.strip()) for line in lines)  # pandas' way with a longer separator

    def rows(self):
        """Yield ``(line, fields)`` for each data row, ``fields`` as many as the header's columns."""
        self.bad_utf8_lines, self.long_rows = 0, []
        lines = self._lines()
        next(lines, None)  # the header
        consumed = 1

        def counted():
            nonlocal consumed
            for text in lines:
                consumed += 1
                yield text

        reader = self._split(counted())
        first = True
        while True:
            line = consumed + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise AtomicFileError(
                    f"{self._where(consumed)}: {error}. RecBole's reader (pandas) parses the file as CSV: a field "
                    "that starts with a double quote runs to the next lone quote (quote the whole field and double "
                    "the quotes inside it, or remove the leading quote), and a carriage return ends the row."
                ) from None
            if len(fields) <= 1 and not "".join(fields).strip():
                continue  # pandas skips blank lines
            yield line, self._check(line, fields, first)
            first = False

    def _check(self, line, fields, first):
        width = len(self.columns)
        if len(fields) < width:
            raise AtomicFileError(
                f"{self._where(line)}: {len(fields)} fields, the header has {width} "
                f"(the first missing is '{self.columns[len(fields)]}'); RecBole would read it as empty. "
                "Fix the row (a missing field, or a line break inside one) or remove it."
            )
        if len(fields) > width:
            if first:  # pandas then takes the first field as a row label and shifts every column left
                raise AtomicFileError(
                    f"{self._where(line)}: {len(fields)} fields, the header has {width}; on the first row RecBole's "
                    "reader (pandas) would shift every column by one. Remove the extra fields (a stray separator?)."
                )
            self.long_rows.append((line, len(fields)))
            fields = fields[:width]
        for column, kind in enumerate(self.types):
            value = fields[column]
            if kind.startswith("float") and value not in NA_STRINGS:
                try:
                    for number in value.split(self.seq_separator) if kind == "float_seq" else [value]:
                        if number:
                            float(number)
                except ValueError:
                    raise AtomicFileError(
                        f"{self._where(line, column)}: '{value}' is not a number but the column is {kind}. "
                        "Fix the value, leave it empty (missing), or declare the column as token."
                    ) from None
        return fields

    def notes(self):
        """Log lines about what RecBole reads differently from the file (after :meth:`rows`)."""
        notes = []
        if self.bad_utf8_lines:
            notes.append(f"{self.path.name}: {self.bad_utf8_lines} lines not valid {self.encoding}, "
                         "read with replacement characters")
        if self.long_rows:
            line, fields = self.long_rows[0]
            more = f" ({len(self.long_rows) - 1} more lines like it)" if len(self.long_rows) > 1 else ""
            notes.append(f"{self.path.name}:{line}: {fields} fields, the header has {len(self.columns)}{more}; "
                         "RecBole ignores the fields past the header")
        return notes

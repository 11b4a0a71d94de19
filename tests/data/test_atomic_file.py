"""The atomic-file reader reads what RecBole reads, the way it reads it, and refuses what it would misread."""

import math

import numpy as np
import pandas as pd
import pytest

from recbole_tpad.data.atomic_check import check_dataset_files
from recbole_tpad.data.atomic_file import NA_STRINGS, AtomicFile, AtomicFileError

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def recbole_reads(path):
    """The rows as RecBole 1.2.1's ``Dataset._load_feat`` reads them (pandas, python engine, usecols)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()[:-1].split("\t")
    dtype = {column: np.float64 if column.endswith(":float") else str for column in header}
    frame = pd.read_csv(path, delimiter="\t", usecols=header, dtype=dtype, encoding="utf-8", engine="python",
                        encoding_errors="replace")
    return [[None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in frame.values.tolist()]


def as_recbole_values(atomic, fields):
    """Our fields in pandas' terms: floats parsed, NA strings and empty cells missing."""
    return [None if value in NA_STRINGS else float(value) if kind == "float" else value
            for value, kind in zip(fields, atomic.types)]


@pytest.mark.parametrize("content", [
    # RecBole's own tests/test_data/test/test.inter ends like this: 5 fields under 4 columns, no newline
    HEADER + "6\t86\t3\t883603013\n130\t121\t5\t876250746\t1",
    HEADER + "1\t2\t3\t4\n\n   \n5\t6\t7\t8\n",  # blank and whitespace-only lines
    HEADER.replace("\n", "\r\n") + "1\t2\t3\t4\r\n",  # Windows line ends
    HEADER + "1\t2\t\tNA\n3\t4\t inf\t1e3\n",  # missing floats, as pandas spells them; spaces, exponents
    HEADER + "1\t2\t3\t4\n\t\t\t\n",  # a row of empty fields
    "item_id:token\ttitle:token_seq\tbrand:token\n"  # CSV quoting, as amazon-beauty's .item uses it
    'i1\t"Ace Comb 8"" * Black"\tACE\ni2\t"two\tfields"\t\ni3\tsay "hi"\tX\n',
], ids=["recbole_test_inter", "blank_lines", "crlf", "missing_floats", "empty_row", "quoted_fields"])
def test_rows_are_read_as_recbole_reads_them(tmp_path, content):
    path = tmp_path / "ok.inter"
    path.write_bytes(content.encode())
    atomic = AtomicFile(path)
    ours = [as_recbole_values(atomic, fields) for _, fields in atomic.rows()]
    assert ours == recbole_reads(path)


def test_a_longer_row_is_read_and_named_in_a_note(tmp_path):
    path = tmp_path / "test.inter"
    path.write_text(HEADER + "6\t86\t3\t883603013\n7\t32\t4\t891350932\t1\n130\t121\t5\t876250746\t1")
    atomic = AtomicFile(path)
    assert [line for line, _ in atomic.rows()] == [2, 3, 4]
    assert atomic.notes() == ["test.inter:3: 5 fields, the header has 4 (1 more lines like it); "
                              "RecBole ignores the fields past the header"]


@pytest.mark.parametrize("content, expected", [
    (HEADER + "1\t2\t3\t4\n5\t6\t7\n", r"bad\.inter:3: 3 fields, the header has 4 \(the first missing is 'timestamp'\)"),
    (HEADER + "1\t2\tthree\t4\n", r"bad\.inter:2, column 'rating': 'three' is not a number but the column is float"),
    ("a:token\tv:float_seq\nx\t1 2\ny\t1 two\n", r"bad\.inter:3, column 'v': '1 two' is not a number"),
    (HEADER + "1\t2\t3\t4\t\n5\t6\t7\t8\n", r"bad\.inter:2: 5 fields, the header has 4; on the first row .* shift"),
    ("a:token\tb:token\n1\tok\n2\t\"open\n3\tx\n", r"bad\.inter:4: unexpected end of data\. .* double quote"),
    ("a:token\tb:token\n1\t\"Best\" shampoo\n", r"bad\.inter:2: '\t' expected after '\"'"),
    ("a:token\tt\nx\t1\n", r"bad\.inter:1: header column 't' must be 'name:type'"),
    ("a:token\tt:floaty\nx\t1\n", r"bad\.inter:1: header column 't:floaty'"),
    ("\n", r"bad\.inter:1: empty file"),
], ids=["too_few_fields", "not_a_number", "not_a_number_in_a_sequence", "longer_first_row", "unclosed_quote",
        "text_after_a_closing_quote", "header_without_type", "unknown_type", "empty"])
def test_what_recbole_would_misread_is_refused_naming_file_line_and_column(tmp_path, content, expected):
    path = tmp_path / "bad.inter"
    path.write_text(content)
    with pytest.raises(AtomicFileError, match=expected):
        list(AtomicFile(path).rows())


def test_a_longer_first_row_is_refused_because_pandas_shifts_the_columns(tmp_path):
    path = tmp_path / "bad.inter"
    path.write_text(HEADER + "1\t2\t3\t4\t9\n5\t6\t7\t8\n")
    assert recbole_reads(path)[0] == ["2", "3", 4.0, 9.0]  # user '2', item '3': every column moved


def test_dataset_check_notes_what_recbole_replaces_ignores_and_drops(tmp_path):
    (tmp_path / "d.inter").write_bytes(b"session_id:token\titem_id:token\ns1\ti1\ns1\tghost\t7\n")
    (tmp_path / "d.item").write_bytes(b"item_id:token\ttitle:token_seq\ni1\tCaf\xe9\n")
    config = {"dataset": "d", "data_path": str(tmp_path), "ITEM_ID_FIELD": "item_id", "field_separator": "\t",
              "seq_separator": " ", "encoding": "utf-8"}
    assert check_dataset_files(config) == [
        "d.inter:3: 3 fields, the header has 2; RecBole ignores the fields past the header",
        "d.item: 1 lines not valid utf-8, read with replacement characters",
        "d.inter: 1 of 2 interactions name 1 items missing from d.item; RecBole drops them (filter_inter_by_user_or_item)",
    ]

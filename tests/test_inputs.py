"""Reading input records: bad lines fail alone, CSV cells are typed, keys are unique, sources are checked early."""

from __future__ import annotations

import os
import threading

import pytest

from runner.errors import UsageError
from runner.run.inputs import CSV_CELL_LIMIT, is_stream, read_inputs, record_fingerprint

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
    },
}


def read(path, **options) -> list[tuple]:
    return [(item.key, item.record, item.problem) for item in read_inputs(str(path), **options)]


def write_bytes(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b'{"text": "\\ud800 alone"}', "lone surrogate"),
        (b'{"text": "caf\xe9"}', "not valid UTF-8 text (byte 0xe9"),
        (b'{"text": NaN}', "NaN is not a JSON number"),
        (b'{"text": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"text": "x"', "not valid JSON"),
    ],
    ids=["lone-surrogate", "latin-1-byte", "nan", "infinity", "broken-json"],
)
def test_a_bad_jsonl_line_fails_alone_with_its_line_number(tmp_path, line, words):
    path = write_bytes(tmp_path / "in.jsonl", b'{"text": "one"}\n\n' + line + b'\n{"text": "four"}\n')
    items = read(path)
    assert [key for key, _, _ in items] == [1, 3, 4]
    assert items[0][1] == {"text": "one"} and items[2][1] == {"text": "four"}
    _, record, problem = items[1]
    assert record is None and problem.startswith("line 3") and words in problem


def test_a_valid_surrogate_pair_is_text(tmp_path):
    path = write_bytes(tmp_path / "in.jsonl", b'{"text": "\\ud83d\\ude00"}\n')
    assert read(path) == [(1, {"text": "\U0001f600"}, None)]


def test_utf8_byte_order_marks_are_not_part_of_the_first_field(tmp_path):
    csv_path = write_bytes(tmp_path / "excel.csv", "\ufeffname,count\r\nAda,3\r\n".encode())
    assert read(csv_path, input_schema=SCHEMA) == [(2, {"name": "Ada", "count": 3}, None)]
    jsonl_path = write_bytes(tmp_path / "bom.jsonl", '\ufeff{"name": "Ada"}\n'.encode())
    assert read(jsonl_path) == [(1, {"name": "Ada"}, None)]


@pytest.mark.parametrize(
    ("row", "words"),
    [
        (b"Bob\n", "line 3 has 1 cell(s), the header has 2"),
        (b"Bob,4,extra\n", "line 3 has 3 cell(s), the header has 2"),
        (b"Bj\xf6rn,4\n", "line 3 is not valid UTF-8 text (byte 0xf6 in column 'name')"),
        (b"Bob," + b"9" * (CSV_CELL_LIMIT + 1) + b"\n", "line 3: the cell of column 'count' is longer than 131072"),
        (b'"' + b"x\n" * (CSV_CELL_LIMIT // 2 + 1) + b'",4\n', "line 3: the cell of column 'name' is longer"),
        (b"Bob,NaN\n", "line 3: column 'count' is 'NaN', not a number"),
    ],
    ids=["short-row", "long-row", "latin-1-byte", "huge-cell", "huge-quoted-cell-over-many-lines", "nan"],
)
def test_a_bad_csv_row_fails_alone_with_its_line_number(tmp_path, row, words):
    path = write_bytes(tmp_path / "in.csv", b"name,count\nAda,3\n" + row + b"Cy,5\n")
    items = read(path, input_schema=SCHEMA)
    assert [record for _, record, _ in items if record] == [{"name": "Ada", "count": 3}, {"name": "Cy", "count": 5}]
    [problem] = [problem for _, _, problem in items if problem]
    assert problem.startswith("line 3") and words in problem
    assert len(items) == 3  # a long quoted cell does not leak its remaining lines as rows


def test_csv_cells_are_trimmed_and_typed_by_the_input_schema(tmp_path):
    path = write_bytes(
        tmp_path / "in.csv",
        b"name , count, score,active,note\n"
        b" Ada , 3.0 , 2.5 , YES , keep me \n"
        b"Bob,1e2,-7,0,\n"
        b"Cy,2.5,1,False,x\n"
        b"Di,4,Infinity,true,x\n"
        b"Ed,,,,\n",
    )
    items = read(path, input_schema=SCHEMA)
    assert items[0] == (2, {"name": "Ada", "count": 3, "score": 2.5, "active": True, "note": "keep me"}, None)
    assert items[1] == (3, {"name": "Bob", "count": 100, "score": -7, "active": False}, None)
    assert items[2][1]["count"] == "2.5"  # not an integer: left as text for the schema check to name
    assert items[2][1]["active"] is False
    assert "column 'score' is 'Infinity', not a number" in items[3][2]
    assert items[4] == (6, {"name": "Ed"}, None)  # empty typed cells are missing values


def test_duplicate_keys_fail_the_later_record_and_keys_stay_unique(tmp_path):
    path = write_bytes(
        tmp_path / "in.jsonl",
        b'{"id": "a", "text": "1"}\n{"id": "b", "text": "2"}\n{"id": "a", "text": "3"}\n'
        b'{"text": "no id"}\n{"id": 4, "text": "5"}\n{"id": "4", "text": "6"}\n{oops\n',
    )
    items = read(path, key_field="id")
    assert [key for key, _, _ in items] == ["a", "b", "line 3", "line 4", 4, "line 6", "line 7"]
    problems = {key: problem for key, _, problem in items if problem}
    assert "duplicate key 'a' (first on line 1)" in problems["line 3"]
    assert "no usable --key-field 'id'" in problems["line 4"]
    assert "duplicate key '4' (first on line 5)" in problems["line 6"]  # 4 and "4" are one key in the database
    assert "not valid JSON" in problems["line 7"]
    assert len({str(key) for key, _, _ in items}) == len(items)


def test_a_failed_record_never_takes_a_key_already_used(tmp_path):
    path = write_bytes(tmp_path / "in.jsonl", b'{"id": "line 2"}\n{"text": "no id"}\n')
    assert [key for key, _, _ in read(path, key_field="id")] == ["line 2", "line 2 (1)"]


def test_line_number_keys_need_no_bookkeeping(tmp_path):
    path = write_bytes(tmp_path / "in.jsonl", b'{"id": "a"}\n{"id": "a"}\n')
    assert [(key, problem) for key, _, problem in read(path)] == [(1, None), (2, None)]


@pytest.mark.parametrize(
    ("name", "words"),
    [("missing.jsonl", "no such file"), ("missing.txt", "no such file"), ("data.txt", "use a .jsonl"), ("", "folder")],
)
def test_unusable_sources_are_refused_when_opened_not_when_read(tmp_path, name, words):
    (tmp_path / "data.txt").write_text("{}\n")
    with pytest.raises(UsageError, match=words):
        read_inputs(str(tmp_path / name))  # no iteration: the check happens before a run exists


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path):
    path = write_bytes(tmp_path / "in.csv", b"name,name\na,b\n")
    with pytest.raises(UsageError, match=r"line 1 .*'name' twice"):
        read_inputs(path)


def test_a_pipe_is_read_as_json_lines(tmp_path):
    read_end, write_end = os.pipe()

    def feed():
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(b'{"text": "from a pipe"}\n')

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        source = f"/dev/fd/{read_end}"
        assert is_stream(source) and not is_stream(str(tmp_path))
        assert read(source) == [(1, {"text": "from a pipe"}, None)]
    finally:
        writer.join()
        os.close(read_end)


def test_the_fingerprint_follows_content_not_key_order():
    assert record_fingerprint({"a": 1, "b": [1, 2]}) == record_fingerprint({"b": [1, 2], "a": 1})
    assert record_fingerprint({"a": 1}) != record_fingerprint({"a": 2})
    assert record_fingerprint({"a": 1}) != record_fingerprint({"a": "1"})


def test_stdin_is_read_as_bytes_so_a_bad_byte_fails_one_line(monkeypatch):
    import io
    import sys

    data = b'\xef\xbb\xbf{"text": "one"}\n{"text": "\xff"}\n{"text": "three"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    items = read("-")
    assert [(key, record) for key, record, _ in items] == [(1, {"text": "one"}), (2, None), (3, {"text": "three"})]
    assert "line 2 is not valid UTF-8 text (byte 0xff" in items[1][2]

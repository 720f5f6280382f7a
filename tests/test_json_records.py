"""The small JSON records kept beside the store (daemon lock and status, exit spool, store ids, lease holders):
whatever a crashed writer or a hand edit left, a reader gets the object or None, never an error."""

import pytest

from agentledger.infrastructure.json_records import json_object, read_json_object

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("data", [None, b"", b"  \n", b'{"pid": 12', b"[1, 2]", b"7", "null", b"\xff\xfe"])
def test_anything_but_a_json_object_reads_as_none(data):
    assert json_object(data) is None


def test_an_object_reads_as_itself_from_bytes_text_and_a_file(tmp_path):
    assert json_object(b'{"pid": 12}') == json_object('{"pid": 12}') == {"pid": 12}
    record = tmp_path / "status.json"
    assert read_json_object(record) is None  # missing
    record.write_bytes(b'{"pid": 12, "host": "h"}')
    assert read_json_object(record) == {"pid": 12, "host": "h"}
    record.write_bytes(b'{"pid": 1')  # cut short by a writer that died
    assert read_json_object(record) is None
    assert read_json_object(tmp_path) is None  # a directory: unreadable as a file

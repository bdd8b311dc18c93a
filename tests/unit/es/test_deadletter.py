"""Dead-letter lines: what was refused, why, and the document exactly as sent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.bulk import ItemFailure
from faaslens.ingest.sink_es.deadletter import DeadLetterFile, encode_line, iter_lines

SOURCE = orjson.dumps({"@timestamp": 1764072000000, "event.duration": "abc", "message": "é\n"})
FAILURE = ItemFailure(
    Doc("invocations", "inv-2", "2026.11.25", SOURCE),
    400,
    "document_parsing_exception",
    "failed to parse field [event.duration] of type [long]",
)
WHEN = datetime(2026, 11, 25, 13, 5, 12, 345000, tzinfo=UTC)


def test_line_holds_index_id_status_reason_error_and_source() -> None:
    line = encode_line(FAILURE, "fl", WHEN)
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    entry = orjson.loads(line)
    assert entry == {
        "time": "2026-11-25T13:05:12.345Z",
        "index": "fl-invocations-2026.11.25",
        "id": "inv-2",
        "status": 400,
        "reason": "mapping",
        "error": {
            "type": "document_parsing_exception",
            "reason": "failed to parse field [event.duration] of type [long]",
        },
        "source": orjson.loads(SOURCE),
    }
    assert line.endswith(b',"source":' + SOURCE + b"}\n")  # spliced, not re-encoded


def test_file_appends_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dead.ndjson"
    dead = DeadLetterFile(path, "fl")
    dead.write([FAILURE], WHEN)
    dead.write([FAILURE, FAILURE], WHEN)
    dead.write([], WHEN)
    entries = list(iter_lines(path))
    assert len(entries) == 3
    assert {e["id"] for e in entries} == {"inv-2"}

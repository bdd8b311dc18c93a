"""The disk spool: record format, order across segments, cap, crash recovery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from faaslens.ingest.dirlock import DirectoryInUse
from faaslens.ingest.events import Doc, IndexKind
from faaslens.ingest.sink_es.spool import (
    Spool,
    SpoolCorrupt,
    SpoolFull,
    decode_payload,
    encode_record,
)


def _batch(start: int, n: int, size: int = 100) -> list[Doc]:
    kinds: tuple[IndexKind, ...] = ("invocations", "logs", "errors")
    return [
        Doc(
            kinds[i % 3],
            f"ex-{i}",
            "2026.11.25",
            orjson.dumps({"event.sequence": i, "message": "x" * size}),
        )
        for i in range(start, start + n)
    ]


def _replay_all(spool: Spool) -> list[Doc]:
    out: list[Doc] = []
    while (segment := spool.oldest()) is not None:
        records, corrupt = spool.load(segment)
        assert corrupt is None
        for record in records:
            out += record
        spool.remove(segment)
    return out


def test_record_round_trip_keeps_every_field() -> None:
    docs = [
        *_batch(0, 5),
        Doc("logs", "ünïcode-id", "2026.01.02", b'{"a":"\\u00e9"}'),
        Doc("invocations", "replaces-unfinished", "2026.01.02", b"{}", "index"),
        Doc("errors", "e", "2026.01.02", b"{}", "create"),
    ]
    record = encode_record(docs)
    assert record[:4] == b"FLS1"
    assert decode_payload(record[12:]) == docs


def test_replay_order_across_rotated_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=2_000)
    spool.open()
    sent: list[Doc] = []
    for n in range(20):
        batch = _batch(n * 7, 7)
        spool.append(batch)
        sent += batch
    assert spool.segment_count > 3  # rotation happened
    assert spool.total_bytes == sum(p.stat().st_size for p in tmp_path.glob("segment-*"))
    assert _replay_all(spool) == sent
    assert spool.is_empty() and spool.total_bytes == 0
    assert list(tmp_path.glob("segment-*")) == []  # segments deleted once confirmed


def test_appends_during_replay_go_to_a_new_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.open()
    spool.append(_batch(0, 3))
    segment = spool.oldest()  # seals the active segment
    assert segment is not None
    spool.append(_batch(3, 3))
    records, _ = spool.load(segment)
    assert [d.doc_id for r in records for d in r] == ["ex-0", "ex-1", "ex-2"]
    spool.remove(segment)
    assert [d.doc_id for d in _replay_all(spool)] == ["ex-3", "ex-4", "ex-5"]


def test_cap_refuses_whole_batch_and_writes_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=3_000)
    spool.open()
    spool.append(_batch(0, 10))
    size = spool.total_bytes
    with pytest.raises(SpoolFull):
        spool.append(_batch(10, 30))
    assert spool.total_bytes == size
    assert _replay_all(spool) == _batch(0, 10)


def test_reopen_picks_up_segments_of_an_earlier_run(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_500)
    first.open()
    for n in range(5):
        first.append(_batch(n * 4, 4))
    first.close()
    second = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_500)
    second.open()
    assert second.total_bytes == first.total_bytes
    second.append(_batch(20, 4))  # continues after the old segments
    assert [d.doc_id for d in _replay_all(second)] == [f"ex-{i}" for i in range(24)]


def test_torn_tail_keeps_the_records_before_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.open()
    spool.append(_batch(0, 3))
    spool.append(_batch(3, 3))
    spool.close()
    (path,) = tmp_path.glob("segment-*")
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # a crash in the middle of the second append
    reopened = Spool(tmp_path, max_bytes=10_000_000)
    reopened.open()
    segment = reopened.oldest()
    assert segment is not None
    records, corrupt = reopened.load(segment)
    assert [d.doc_id for r in records for d in r] == ["ex-0", "ex-1", "ex-2"]
    assert corrupt == "truncated record payload"


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    record = bytearray(encode_record(_batch(0, 2)))
    record[40] ^= 0xFF
    path = tmp_path / "segment-000000000001.spool"
    path.write_bytes(bytes(record))
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.open()
    segment = spool.oldest()
    assert segment is not None
    records, corrupt = spool.load(segment)
    assert records == [] and corrupt == "record checksum mismatch"


def test_decode_rejects_garbage() -> None:
    with pytest.raises(SpoolCorrupt):
        decode_payload(b"\x07\x01\x00")


def test_append_requires_open(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        Spool(tmp_path / "s", max_bytes=1000).append(_batch(0, 1))


def test_unencodable_document_is_a_value_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.open()
    with pytest.raises(ValueError):
        spool.append([Doc("logs", "x" * 70_000, "2026.11.25", b"{}")])
    assert spool.is_empty()


def test_a_second_owner_of_a_spool_directory_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    first = Spool(tmp_path / "spool", 1 << 20)
    first.open()
    second = Spool(tmp_path / "spool", 1 << 20)
    with pytest.raises(DirectoryInUse, match=r"spool_dir .*spool is in use .*pid \d+"):
        second.open()
    first.close()
    second.open()  # the lock went with the first owner
    second.close()


def test_a_killed_owner_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (
        "import os, sys; from faaslens.ingest.sink_es.spool import Spool; "
        f"s = Spool({str(tmp_path / 'spool')!r}, 1 << 20); s.open(); "
        "print('locked', flush=True); sys.stdin.readline()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryInUse, match=f"pid {proc.pid}"):
            Spool(tmp_path / "spool", 1 << 20).open()
    finally:
        proc.kill()
        proc.wait()
    spool = Spool(tmp_path / "spool", 1 << 20)
    spool.open()
    spool.close()

"""A disk buffer for documents that Elasticsearch could not take yet.

The spool is a directory of append-only *segment* files
(``segment-000000000001.spool``, ...). Each append writes one *record*, the
documents of one batch, and is fsynced before :meth:`Spool.append` returns,
so a batch the sink reports as spooled survives a crash. Records are
length-prefixed and checksummed::

    record  = magic "FLS1" | u32 payload length | u32 crc32(payload) | payload
    payload = doc*
    doc     = u8 kind | u16 len(id) | u16 len(day) | u32 len(source) | id | day | source
    kind    = index kind code (0 invocations, 1 logs, 2 errors), + 0x80 for bulk op "index"

Replay reads *sealed* segments, oldest first; the active segment is sealed
(rotated) when replay reaches it, so a reader never races a writer. A segment
is removed only after the sink has confirmed every document in it. The
total size is capped: an append over the cap raises :class:`SpoolFull`.

Methods block on disk I/O and are thread-safe: the sink calls them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from faaslens.ingest.dirlock import DirectoryLock
from faaslens.ingest.events import BulkOp, Doc, IndexKind
from faaslens.protocol import INDEX_KINDS

MAGIC = b"FLS1"
_RECORD = struct.Struct("<4sII")
_DOC = struct.Struct("<BHHI")
_KINDS: tuple[IndexKind, ...] = INDEX_KINDS
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}
_OP_INDEX = 0x80  # high bit of the kind byte: the document is written with op "index"
_SEGMENT_RE = re.compile(r"^segment-(\d{12})\.spool$")

MIN_SEGMENT_BYTES = 64 * 1024
MAX_SEGMENT_BYTES = 64 * 1024 * 1024


class SpoolFull(Exception):
    """Appending would take the spool over its size cap."""


class SpoolCorrupt(ValueError):
    """A segment holds bytes that are not a whole, valid record."""


def encode_record(docs: Sequence[Doc]) -> bytes:
    """One record (header + payload) holding ``docs``; ValueError if a field cannot fit."""
    parts: list[bytes] = []
    for doc in docs:
        doc_id = doc.doc_id.encode("utf-8")
        day = doc.day.encode("ascii")  # UnicodeEncodeError is a ValueError
        if len(doc_id) > 0xFFFF or len(day) > 0xFFFF or len(doc.source) > 0xFFFFFFFF:
            raise ValueError(f"document {doc.doc_id[:64]!r} too large for a spool record")
        code = _KIND_CODE[doc.kind] | (_OP_INDEX if doc.op == "index" else 0)
        parts.append(_DOC.pack(code, len(doc_id), len(day), len(doc.source)))
        parts += (doc_id, day, doc.source)
    payload = b"".join(parts)
    return _RECORD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> list[Doc]:
    """The documents of one record's payload."""
    docs: list[Doc] = []
    view = memoryview(payload)
    pos = 0
    end = len(payload)
    try:
        while pos < end:
            code, id_len, day_len, src_len = _DOC.unpack_from(view, pos)
            pos += _DOC.size
            doc_id = bytes(view[pos : pos + id_len]).decode("utf-8")
            pos += id_len
            day = bytes(view[pos : pos + day_len]).decode("ascii")
            pos += day_len
            source = bytes(view[pos : pos + src_len])
            pos += src_len
            op: BulkOp = "index" if code & _OP_INDEX else "create"
            code &= ~_OP_INDEX
            if pos > end or code >= len(_KINDS):
                raise SpoolCorrupt("document runs past its record or has an unknown kind")
            docs.append(Doc(_KINDS[code], doc_id, day, source, op))
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpoolCorrupt(f"undecodable document: {exc}") from exc
    return docs


def read_records(fh: BinaryIO) -> Iterator[list[Doc]]:
    """Records of an open segment, in order. Raises :class:`SpoolCorrupt` at a bad record
    (a torn tail after a crash mid-append is one): the records before it are yielded."""
    while True:
        header = fh.read(_RECORD.size)
        if not header:
            return
        if len(header) < _RECORD.size:
            raise SpoolCorrupt("truncated record header")
        magic, length, crc = _RECORD.unpack(header)
        if magic != MAGIC:
            raise SpoolCorrupt("bad record magic")
        payload = fh.read(length)
        if len(payload) < length:
            raise SpoolCorrupt("truncated record payload")
        if zlib.crc32(payload) != crc:
            raise SpoolCorrupt("record checksum mismatch")
        yield decode_payload(payload)


@dataclass(frozen=True, slots=True)
class Segment:
    """A sealed segment file, ready for replay."""

    seq: int
    path: Path
    size: int


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Size-capped, crash-safe FIFO of document batches on disk."""

    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, segment_bytes: int | None = None
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("spool max_bytes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        # Several segments fit under the cap, so replay can free space while writes go on.
        self.segment_bytes = segment_bytes or min(
            MAX_SEGMENT_BYTES, max(MIN_SEGMENT_BYTES, max_bytes // 8)
        )
        self._lock = threading.Lock()
        self._sealed: dict[int, Segment] = {}
        self._active: BinaryIO | None = None
        self._active_seq = 0
        self._active_size = 0
        self._next_seq = 1
        self._opened = False
        self._owner = DirectoryLock(self.directory, "spool_dir")

    def open(self) -> None:
        """Create the directory, take its lock and pick up segments left by an earlier run
        (all sealed).

        Raises:
            DirectoryInUse: another worker owns the directory.
        """
        with self._lock:
            self._owner.acquire()
            for entry in sorted(self.directory.iterdir()):
                match = _SEGMENT_RE.match(entry.name)
                if not match:
                    continue
                seq = int(match.group(1))
                size = entry.stat().st_size
                if size == 0:
                    entry.unlink()
                    continue
                self._sealed[seq] = Segment(seq, entry, size)
                self._next_seq = max(self._next_seq, seq + 1)
            self._opened = True

    @property
    def total_bytes(self) -> int:
        """Bytes on disk, sealed and active segments."""
        return sum(s.size for s in self._sealed.values()) + self._active_size

    @property
    def segment_count(self) -> int:
        """Segments holding data, the active one included."""
        return len(self._sealed) + (1 if self._active_size else 0)

    def is_empty(self) -> bool:
        """True when nothing waits for replay."""
        return not self._sealed and not self._active_size

    def append(self, docs: Sequence[Doc]) -> int:
        """Write ``docs`` as one record and fsync it. Returns the bytes written.

        Raises :class:`SpoolFull` (nothing written) when the cap would be exceeded.
        """
        record = encode_record(docs)
        with self._lock:
            if not self._opened:
                raise RuntimeError("Spool.open() first")
            if self.total_bytes + len(record) > self.max_bytes:
                raise SpoolFull(
                    f"spool at {self.total_bytes} bytes, cap {self.max_bytes}, "
                    f"record of {len(record)} bytes refused"
                )
            if self._active is not None and self._active_size >= self.segment_bytes:
                self._seal_locked()
            if self._active is None:
                self._active_seq = self._next_seq
                self._next_seq += 1
                path = self._path(self._active_seq)
                self._active = open(path, "xb")  # noqa: SIM115  (kept open across appends)
                _fsync_dir(self.directory)  # the new file's name is durable too
            self._active.write(record)
            self._active.flush()
            os.fdatasync(self._active.fileno())
            self._active_size += len(record)
            return len(record)

    def oldest(self) -> Segment | None:
        """The oldest segment to replay, sealing the active one if it is the only one left."""
        with self._lock:
            if not self._sealed and self._active_size:
                self._seal_locked()
            if not self._sealed:
                return None
            return self._sealed[min(self._sealed)]

    def read(self, segment: Segment) -> Iterator[list[Doc]]:
        """Records of a sealed segment, in order (see :func:`read_records`)."""
        with open(segment.path, "rb") as fh:
            yield from read_records(fh)

    def load(self, segment: Segment) -> tuple[list[list[Doc]], str | None]:
        """All records of a sealed segment, and the corruption met (None if whole).

        Records before a corrupt one are returned: a torn tail loses only the
        append that was cut short, which its writer never saw succeed.
        """
        records: list[list[Doc]] = []
        try:
            for record in self.read(segment):
                records.append(record)
        except SpoolCorrupt as exc:
            return records, str(exc)
        return records, None

    def remove(self, segment: Segment) -> None:
        """Delete a segment whose documents are all confirmed."""
        with self._lock:
            self._sealed.pop(segment.seq, None)
            segment.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Seal the active segment (fsynced) so the next run replays it; release the lock."""
        with self._lock:
            if self._active is not None:
                self._seal_locked()
            self._owner.release()

    def _seal_locked(self) -> None:
        assert self._active is not None
        self._active.flush()
        os.fsync(self._active.fileno())
        self._active.close()
        self._active = None
        path = self._path(self._active_seq)
        if self._active_size:
            self._sealed[self._active_seq] = Segment(self._active_seq, path, self._active_size)
        else:
            path.unlink(missing_ok=True)
        self._active_size = 0
        _fsync_dir(self.directory)

    def _path(self, seq: int) -> Path:
        return self.directory / f"segment-{seq:012d}.spool"

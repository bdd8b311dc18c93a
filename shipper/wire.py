"""Frames on the wire (docs/protocol.md): packing, limits, truncation, signing.

Pure: bytes in, bytes out, no I/O. The common case (an invocation record and a
few log lines under the datagram size) costs one ``orjson.dumps`` of the event
list; the resource block is serialized once per process and spliced in.
"""

from __future__ import annotations

import math

import orjson

# Limits are defined once, for both sides, in faaslens.protocol.
from faaslens.protocol import LOG_LABELS_DEPTH, MARKER, MAX_EVENTS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

LOG_LABEL_BUDGET = LOG_LABELS_DEPTH - 1  # nesting allowed below the labels object itself

_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS  # slower: only on the fallback path


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending with the marker when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(MARKER))] + MARKER


def _fallback(obj: object) -> object:
    """orjson's hook for types it does not know: sets become lists, the rest str()."""
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    try:
        return str(obj)
    except Exception:  # a user's __str__ that raises
        return f"<unprintable {type(obj).__name__}>"


def _plain(obj: object, depth: int = 0) -> object:
    """A JSON-safe copy for what orjson refuses (ints over 64 bits, cycles, deep nesting)."""
    if depth > 32:
        return "<too deep>"
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj if -(1 << 63) <= obj < (1 << 64) else str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    return _fallback(obj)


def dumps(obj: object) -> bytes:
    """orjson.dumps that never raises on user data."""
    try:
        data: bytes = orjson.dumps(obj, default=_fallback)
    except TypeError:  # non-str keys, ints over 64 bits, cycles
        data = orjson.dumps(_plain(obj), default=_fallback, option=_NON_STR_KEYS)
    return data


class Signer:
    """HMAC-SHA256 signing: ``s1 <key-id> <hex> <json>``."""

    __slots__ = ("_key", "_new", "_prefix", "_sha256", "overhead")

    def __init__(self, key_id: str, key: str | bytes) -> None:
        import hashlib
        import hmac

        self._new = hmac.new
        self._sha256 = hashlib.sha256
        self._key = key.encode() if isinstance(key, str) else key
        self._prefix = b"s1 " + key_id.encode() + b" "
        self.overhead = len(self._prefix) + 64 + 1

    def sign(self, body: bytes) -> bytes:
        """The signed frame for a JSON body."""
        digest = self._new(self._key, body, self._sha256).hexdigest().encode()
        return self._prefix + digest + b" " + body


class Packer:
    """Packs events into self-contained frames under a size target."""

    __slots__ = ("_hard_max", "_head", "_max", "_res", "_res_part", "_signer", "oversize", "shrunk")

    def __init__(
        self, src: str, max_datagram: int, hard_max: int, signer: Signer | None = None
    ) -> None:
        overhead = signer.overhead if signer else 0
        self._max = max_datagram - overhead
        self._hard_max = hard_max - overhead
        self._signer = signer
        self._head = b'{"v":1,"src":' + orjson.dumps(src) + b',"seq":'
        self._res = b""
        self._res_part = b""
        self.oversize = 0  # frames over the datagram size (one big event alone)
        self.shrunk = 0  # events cut further to fit the transport's hard limit

    def _frame(self, seq: int, res: bytes, events_json: bytes) -> bytes:
        body = b"".join((self._head, str(seq).encode(), res, b',"ev":', events_json, b"}"))
        return self._signer.sign(body) if self._signer else body

    def pack(
        self, res_json: bytes, events: list[dict[str, Any]], next_seq: Callable[[], int]
    ) -> list[bytes]:
        """Frames for ``events`` in order. ``res_json`` is the serialized resource block."""
        if res_json is not self._res:  # the resource block is the same for every call
            self._res = res_json
            self._res_part = b',"res":' + res_json if res_json else b""
        res = self._res_part
        fixed = len(self._head) + len(res) + 30  # seq digits, ',"ev":[', '}'
        if len(events) <= MAX_EVENTS:
            whole = dumps(events)
            if len(whole) + fixed <= self._max:
                return [self._frame(next_seq(), res, whole)]
        parts = [dumps(ev) for ev in events]
        frames: list[bytes] = []
        batch: list[bytes] = []
        size = fixed
        for ev, part in zip(events, parts, strict=True):
            if len(part) + fixed > self._max:
                if batch:  # keep frames in event order
                    frames.append(self._frame(next_seq(), res, b"[" + b",".join(batch) + b"]"))
                    batch, size = [], fixed
                alone = part
                if len(part) + fixed > self._hard_max:
                    alone = self._shrink(ev, self._hard_max - fixed)
                    self.shrunk += 1
                self.oversize += 1
                frames.append(self._frame(next_seq(), res, b"[" + alone + b"]"))
                continue
            if batch and (size + len(part) + 1 > self._max or len(batch) >= MAX_EVENTS):
                frames.append(self._frame(next_seq(), res, b"[" + b",".join(batch) + b"]"))
                batch, size = [], fixed
            batch.append(part)
            size += len(part) + 1
        if batch:
            frames.append(self._frame(next_seq(), res, b"[" + b",".join(batch) + b"]"))
        return frames

    @staticmethod
    def _shrink(ev: dict[str, Any], budget: int) -> bytes:
        """Cut the longest strings of one event until it fits ``budget`` bytes."""
        ev = dict(ev)
        data = dumps(ev)
        for _ in range(64):
            if len(data) <= budget:
                return data
            longest = max(
                (k for k in ev if isinstance(ev[k], str)),
                key=lambda k: len(ev[k]),
                default=None,
            )
            if "labels" in ev and (longest is None or len(dumps(ev["labels"])) > len(ev[longest])):
                ev["labels"] = {"_dropped": "labels too large for one frame"}
            elif longest is not None:
                excess = len(data) - budget
                text = ev[longest]
                ev[longest] = truncate(text, max(len(MARKER), len(text) - excess - 16))
            else:
                break
            data = dumps(ev)
        return data

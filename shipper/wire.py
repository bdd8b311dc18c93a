"""Frames on the wire (docs/protocol.md): packing, limits, truncation, signing.

Pure: bytes in, bytes out, no I/O. The common case (an invocation record and a
few log lines under the datagram size) costs one ``orjson.dumps`` of the event
list; the resource block is serialized once per process and spliced in.
"""

from __future__ import annotations

import itertools
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


_MARKER_BYTES = len(MARKER.encode())
STACK_MARKER = "  …[{} frames omitted]\n"
_STACK_MARKER_HEAD = "  …["


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending with the marker when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(MARKER))] + MARKER


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (a lone surrogate counts the 3 bytes of its U+FFFD)."""
    return len(text.encode("utf-8", "surrogatepass"))


def truncate_bytes(text: str, max_bytes: int) -> str:
    """``text`` cut on a UTF-8 boundary to at most ``max_bytes`` bytes, marker included.

    Keeps as much as fits: a 4-byte character is never split, nor counted as one byte.
    """
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    # 'ignore' drops the partial character left at the cut.
    return data[: max(0, max_bytes - _MARKER_BYTES)].decode("utf-8", "ignore") + MARKER


def _size(text: str, in_bytes: bool) -> int:
    return utf8_size(text) if in_bytes else len(text)


def _cut(text: str, limit: int, in_bytes: bool) -> str:
    return truncate_bytes(text, limit) if in_bytes else truncate(text, limit)


def shrink_stack(text: str, limit: int, *, in_bytes: bool = False) -> str:
    """A Python traceback within ``limit`` characters (or UTF-8 bytes), keeping what
    explains the error: the header line, the innermost frames and the exception line
    (itself cut when it alone would take more than half). Middle frames are dropped
    with a ``…[N frames omitted]`` line. Text that is not a traceback is cut at its end.
    """
    if _size(text, in_bytes) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if not starts:
        return _cut(text, limit, in_bytes)
    end = starts[-1] + 1  # the exception's text follows the last frame's indented lines
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    # A trace cut before (by errors.stack_trace, then to fit a frame) keeps one marker.
    omitted = 0
    head_lines = []
    for line in lines[: starts[0]]:
        if line.startswith(_STACK_MARKER_HEAD) and line.endswith(" frames omitted]\n"):
            omitted += int(line[len(_STACK_MARKER_HEAD) :].split(" ", 1)[0])
        else:
            head_lines.append(line)
    head = "".join(head_lines)
    tail = "".join(lines[end:])
    marker_room = len(STACK_MARKER) + 8
    tail = _cut(tail, max(limit // 2, _MARKER_BYTES), in_bytes)
    room = limit - _size(head, in_bytes) - _size(tail, in_bytes) - marker_room
    if room < 0:  # not even the header fits beside the exception: keep the exception
        return _cut(tail, limit, in_bytes)
    bounds = [*starts, end]
    blocks = ["".join(lines[a:b]) for a, b in itertools.pairwise(bounds)]
    kept: list[str] = []
    for block in reversed(blocks):
        size = _size(block, in_bytes)
        if size > room:
            break
        kept.append(block)
        room -= size
    omitted += len(blocks) - len(kept)
    middle = STACK_MARKER.format(omitted) if omitted else ""
    return head + middle + "".join(reversed(kept)) + tail


def safe_str(obj: object) -> str:
    """``str(obj)``, or ``<unprintable T>`` when the object's ``__str__`` raises."""
    try:
        text = str(obj)
    except Exception:  # a user's __str__ that raises
        return f"<unprintable {type(obj).__name__}>"
    return text if type(text) is str else f"<unprintable {type(obj).__name__}>"


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate (a non-UTF-8 file name decoded with
    ``surrogateescape``, a half emoji) replaced by U+FFFD: JSON text must be UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        import re

        return re.sub("[\ud800-\udfff]", "\ufffd", text)
    return text


def _fallback(obj: object) -> object:
    """orjson's hook for types it does not know: sets become lists, the rest str()."""
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return safe_str(obj)


def _plain(obj: object, depth: int = 0) -> object:
    """A JSON-safe copy for what orjson refuses: ints over 64 bits, cycles, deep nesting,
    and strings (values or keys) that are not valid UTF-8."""
    if depth > 32:
        return "<too deep>"
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, dict):
        return {clean_text(safe_str(k)): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return obj if -(1 << 63) <= obj < (1 << 64) else str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    return _plain(_fallback(obj), depth + 1)


def dumps(obj: object) -> bytes:
    """orjson.dumps that never raises on user data: strings that are not UTF-8 get U+FFFD
    in place of their lone surrogates, unknown objects their ``str()``."""
    try:
        data: bytes = orjson.dumps(obj, default=_fallback)
    except TypeError:  # non-str keys, ints over 64 bits, cycles, lone surrogates
        data = orjson.dumps(_plain(obj), default=_fallback, option=_NON_STR_KEYS)
    return data


def _shrink_labels(labels: Any, excess: int) -> Any:
    """Labels ``excess`` bytes smaller: their longest string value cut on a UTF-8
    boundary; when the bulk is not one string, a marker in place of them all."""
    if type(labels) is dict:
        sizes = {k: utf8_size(v) for k, v in labels.items() if type(v) is str}
        longest = max(sizes, key=sizes.__getitem__, default=None)
        if longest is not None and sizes[longest] - _MARKER_BYTES > excess:
            cut = truncate_bytes(labels[longest], sizes[longest] - excess - 16)
            return {**labels, longest: cut}
    return {"_dropped": "labels too large for one frame"}


class Signer:
    """HMAC-SHA256 signing with the signing time: ``s2 <key-id> <ms> <hex> <json>``,
    the HMAC taken over ``<ms> <json>`` (the worker refuses a frame signed too long
    ago, so a captured frame cannot be replayed later). ``time_ns``: the wall clock."""

    __slots__ = ("_key", "_new", "_prefix", "_sha256", "_time_ns", "overhead")

    def __init__(
        self, key_id: str, key: str | bytes, time_ns: Callable[[], int] | None = None
    ) -> None:
        import hashlib
        import hmac
        import time

        self._new = hmac.new
        self._sha256 = hashlib.sha256
        self._time_ns = time_ns or time.time_ns
        self._key = key.encode() if isinstance(key, str) else key
        self._prefix = b"s2 " + key_id.encode() + b" "
        # prefix, up to 15 digits of milliseconds and a space, the digest and a space
        self.overhead = len(self._prefix) + 16 + 64 + 1

    def sign(self, body: bytes) -> bytes:
        """The signed frame for a JSON body."""
        stamp = str(self._time_ns() // 1_000_000).encode() + b" "
        digest = self._new(self._key, stamp + body, self._sha256).hexdigest().encode()
        return self._prefix + stamp + digest + b" " + body


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
        """Cut the longest strings of one event (in UTF-8 bytes, on character boundaries)
        until it fits ``budget`` bytes; a stack trace keeps its innermost frames."""
        ev = dict(ev)
        data = dumps(ev)
        for _ in range(64):
            if len(data) <= budget:
                return data
            sizes = {k: utf8_size(v) for k, v in ev.items() if type(v) is str}
            longest = max(sizes, key=sizes.__getitem__, default=None)
            if "labels" in ev and (longest is None or len(dumps(ev["labels"])) > sizes[longest]):
                ev["labels"] = _shrink_labels(ev["labels"], len(data) - budget)
            elif longest is not None and sizes[longest] > _MARKER_BYTES:
                # JSON escapes make the text longer on the wire than in UTF-8: cut a
                # little more than the excess; the loop takes another pass if needed.
                target = max(_MARKER_BYTES, sizes[longest] - (len(data) - budget) - 16)
                text = ev[longest]
                if longest == "error.stack_trace":
                    ev[longest] = shrink_stack(text, target, in_bytes=True)
                else:
                    ev[longest] = truncate_bytes(text, target)
            else:
                break
            data = dumps(ev)
        return data

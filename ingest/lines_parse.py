"""Pure parser for prometheus-aggregator lines: bytes in, an observation or a reason out.

The older project's functions send one metric per line, in either of the two
forms peterbourgon/prometheus-aggregator accepts:

* text: ``name{k="v",...} value``. The braces are required, even when empty;
  label values are quoted and may hold ``\\\\``, ``\\"`` and ``\\n`` escapes
  (the exposition format's); one value, no timestamp.
* JSON: one object with ``name`` and any of ``type`` (``counter`` | ``gauge`` |
  ``histogram``), ``help`` (whitespace runs become one space), ``labels``
  (string -> string), ``buckets`` (numbers), ``value`` (number) and ``op``
  (``add`` | ``set``, gauges only). A line without a value only declares.
  Other keys are ignored, as the aggregator ignores them.

Nothing here raises on input: :func:`parse_line` returns an :class:`Observation`
or one of :data:`PARSE_REASONS`. Whether the metric is declared, and with which
type, is decided by the store (``lines_metrics``), not here.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final, NamedTuple

import orjson

__all__ = [
    "KINDS",
    "LINE_MAX_BYTES",
    "PARSE_REASONS",
    "DeclarationError",
    "Observation",
    "parse_declarations",
    "parse_line",
]

KINDS: Final = ("counter", "gauge", "histogram")
# A UDP datagram carries at most 65,507 bytes; a TCP line longer than this is
# refused (the stream resynchronises at the next LF).
LINE_MAX_BYTES: Final = 65_536
# What one line may make the store keep, so a series costs a bounded amount of memory
# whatever the line's length (the store bounds series per metric and metrics): a name
# or label name of at most NAME_MAX_CHARS, at most LABELS_MAX labels of values up to
# LABEL_VALUE_MAX_CHARS (the frame protocol's invocation label bounds), at most
# BUCKETS_MAX histogram bounds. More is refused as ``too_large``.
NAME_MAX_CHARS: Final = 256
LABELS_MAX: Final = 32
LABEL_VALUE_MAX_CHARS: Final = 1024
BUCKETS_MAX: Final = 64
PARSE_REASONS: Final = (
    "too_long",
    "too_large",
    "bad_encoding",
    "bad_json",
    "bad_text",
    "bad_name",
    "bad_label",
    "bad_value",
    "bad_type",
    "bad_buckets",
    "bad_op",
)

_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# One label pair: the value is quoted, with backslash escapes.
_PAIR: Final = rb'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"'
_PAIRS: Final = re.compile(_PAIR.decode())
_HEAD: Final = re.compile(rb"[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
_BODY: Final = re.compile(rb"(?:" + _PAIR + rb"(?:," + _PAIR + rb")*,?)?\Z")
_TAIL: Final = re.compile(rb"[ \t]+(\S+)[ \t\r]*\Z")
# Label sets repeat (a function sends the same labels on every line): their parsed
# form is kept, which halves the cost of a line. Bounded: short bodies only, and the
# memo starts over when full.
_MEMO_MAX: Final = 4096
_MEMO_BODY_MAX: Final = 512
_memo: dict[bytes, tuple[tuple[str, str], ...] | str] = {}
# Decimal floats only (what the aggregator's strconv.ParseFloat takes, without
# NaN, Inf, hex or underscores: a counter or gauge of NaN helps nobody).
_NUMBER: Final = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_ESCAPES: Final = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE: Final = re.compile(r"\\.")
_OPS: Final = ("add", "set")


class Observation(NamedTuple):
    """One parsed line.

    ``labels`` are sorted by name, so equal label sets give equal keys;
    ``value`` is None for a declaration; ``kind``, ``help``, ``buckets`` and
    ``op`` are None when the line did not give them (always, for a text line).
    ``buckets`` are sorted upper bounds without ``+Inf``.
    """

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float | None
    kind: str | None = None
    help: str | None = None
    buckets: tuple[float, ...] | None = None
    op: str | None = None


class DeclarationError(ValueError):
    """A declaration file that cannot be used, with the entry at fault."""


def _unescape(raw: str) -> str | None:
    if "\\" not in raw:
        return raw
    bad = False

    def sub(m: re.Match[str]) -> str:
        nonlocal bad
        got = _ESCAPES.get(m.group(0))
        if got is None:
            bad = True
            return ""
        return got

    out = _ESCAPE.sub(sub, raw)
    return None if bad else out


def _labels(pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...] | str:
    """Sorted label pairs; ``bad_label`` when a name repeats or is reserved (``__*``),
    ``too_large`` past the bounds (``LABELS_MAX``, ``NAME_MAX_CHARS``,
    ``LABEL_VALUE_MAX_CHARS``)."""
    if len(pairs) > LABELS_MAX:
        return "too_large"
    pairs.sort()
    for i, (k, v) in enumerate(pairs):
        if k.startswith("__") or (i and pairs[i - 1][0] == k):
            return "bad_label"
        if len(k) > NAME_MAX_CHARS or len(v) > LABEL_VALUE_MAX_CHARS:
            return "too_large"
    return tuple(pairs)


def _body(body: bytes) -> tuple[tuple[str, str], ...] | str:
    """The labels between the braces, or a reason."""
    if not _BODY.match(body):
        return "bad_text"
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return "bad_encoding"
    pairs: list[tuple[str, str]] = []
    for k, raw in _PAIRS.findall(text):
        v = _unescape(raw)
        if v is None:
            return "bad_label"
        pairs.append((k, v))
    return _labels(pairs)


def _text(line: bytes) -> Observation | str:
    head = _HEAD.match(line)
    close = line.rfind(b"}")  # a label value may hold "}": the last one closes
    if head is None or close < head.end():
        return "bad_text"
    tail = _TAIL.match(line, close + 1)
    if tail is None:
        return "bad_text"
    value_b = tail.group(1)
    if not _NUMBER.match(value_b):
        return "bad_value"
    value = float(value_b)
    if not math.isfinite(value):
        return "bad_value"
    body = line[head.end() : close]
    labels = _memo.get(body)
    if labels is None:
        labels = _body(body)
        if len(body) <= _MEMO_BODY_MAX:
            if len(_memo) >= _MEMO_MAX:
                _memo.clear()
            _memo[body] = labels
    if isinstance(labels, str):
        return labels
    name = head.group(1).decode()
    if len(name) > NAME_MAX_CHARS:
        return "too_large"
    return Observation(name, labels, value)


def _number(raw: Any) -> float | None:
    """A finite JSON number (not a boolean) as a float, else None."""
    if type(raw) not in (int, float):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def _json(line: bytes) -> Observation | str:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "bad_json"
    if type(obj) is not dict:
        return "bad_json"
    return _from_object(obj)


def _from_object(obj: dict[str, Any]) -> Observation | str:
    """One aggregator observation object (a JSON line or a declaration file entry)."""
    name = obj.get("name")
    if type(name) is not str or not _NAME.match(name):
        return "bad_name"
    if len(name) > NAME_MAX_CHARS:
        return "too_large"
    kind = obj.get("type")
    if kind is not None and kind not in KINDS:
        return "bad_type"
    help_ = obj.get("help")
    if help_ is not None:
        if type(help_) is not str:
            return "bad_type"
        # One line of single spaces: parsers strip a help text's ends and some split
        # lines at CR or Unicode line separators, so only this form reads back the same.
        help_ = " ".join(help_.split())
    raw_labels = obj.get("labels")
    pairs: list[tuple[str, str]] = []
    if raw_labels is not None:
        if type(raw_labels) is not dict:
            return "bad_label"
        for k, v in raw_labels.items():
            if type(v) is not str or not _LABEL.match(k):
                return "bad_label"
            pairs.append((k, v))
    labels = _labels(pairs)
    if isinstance(labels, str):
        return labels
    buckets: tuple[float, ...] | None = None
    raw_buckets = obj.get("buckets")
    if raw_buckets is not None:
        if type(raw_buckets) is not list:
            return "bad_buckets"
        if len(raw_buckets) > BUCKETS_MAX:
            return "too_large"
        bounds = [_number(b) for b in raw_buckets]
        if any(b is None for b in bounds):
            return "bad_buckets"
        # Order does not change which bucket counts a value; the exposition needs it sorted.
        buckets = tuple(sorted({b for b in bounds if b is not None}))
    value: float | None = None
    raw_value = obj.get("value")
    if raw_value is not None:
        value = _number(raw_value)
        if value is None:
            return "bad_value"
    op = obj.get("op")
    if op is not None and op not in _OPS and op != "":
        return "bad_op"
    return Observation(name, labels, value, kind, help_, buckets, op or None)


def parse_line(line: bytes) -> Observation | str:
    """Parse one line (without its LF): an :class:`Observation` or a reason
    from :data:`PARSE_REASONS`. Leading spaces and a trailing CR are ignored."""
    if len(line) > LINE_MAX_BYTES:
        return "too_long"
    stripped = line.strip()
    if stripped[:1] == b"{":
        return _json(stripped)
    return _text(line)


def parse_declarations(data: bytes, source: str = "declarations") -> list[Observation]:
    """The aggregator's ``declaration.json``: a JSON array of objects, each with
    ``name``, ``type`` and ``help`` (histograms: ``buckets``); ``labels`` and
    ``value`` are allowed, as in the aggregator, and make an initial observation.

    Raises :class:`DeclarationError` naming the entry (index and name) at fault.
    """
    try:
        entries = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DeclarationError(f"{source}: not JSON ({exc})") from exc
    if type(entries) is not list:
        raise DeclarationError(f"{source}: expected a JSON array of declarations")
    out: list[Observation] = []
    for i, entry in enumerate(entries):
        where = f"{source}[{i}]"
        if type(entry) is not dict:
            raise DeclarationError(f"{where}: expected an object")
        parsed = _from_object(entry)
        if isinstance(parsed, str):
            raise DeclarationError(f"{where} ({entry.get('name')!r}): {parsed}")
        if parsed.kind is None or not parsed.help:
            raise DeclarationError(f"{where} ({parsed.name!r}): needs a type and a help text")
        out.append(parsed)
    return out

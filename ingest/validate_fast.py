"""The fast path of frame validation: typed decoding in C for frames that are valid.

Nearly every frame a worker sees is valid. For those, decoding straight into
typed structs (msgspec checks types, lengths, ranges and patterns while it
parses) costs a fraction of parsing into dicts and checking every key in
Python. The structs are generated from the field specs of
:mod:`ingest.validate`, so both paths enforce one set of rules.

The fast path only ever *accepts*: on any doubt (a decoding error, an unknown
key, a value it cannot judge exactly as the reference path would) it returns
``None`` and the caller runs the reference validator, which alone decides
rejections, their reasons and unknown-field counts. Equality of both paths on
the test vectors and on mutated frames is checked by the tests.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, Union

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType

from faaslens.protocol import MAX_LABEL_KEY

__all__ = ["UNSET", "FastDecoder", "dumps_members", "float_slack", "to_dict"]

# Beyond this range orjson parses an integer as a float (and msgspec cannot bound
# wider): the fast path leaves such numbers to the reference path.
_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 63) - 1
_FLOAT_MAX: Final = 1.7976931348623157e308
_HEX_DIGITS: Final = "0123456789abcdef"
_RESOURCES_MAX: Final = 4096
_NO_RESOURCE: Final[tuple[dict[str, Any], bytes]] = ({}, b"")


def _attr(key: str) -> str:
    return "f_" + "".join(c if c.isalnum() else "_" for c in key)


class FastDecoder:
    """Decodes a frame body into envelope structs, or ``None`` when unsure."""

    def __init__(
        self,
        *,
        kinds: Mapping[str, int],
        resource: Mapping[str, tuple[int, Any]],
        inv: Mapping[str, tuple[int, Any]],
        inv_required: tuple[str, ...],
        log: Mapping[str, tuple[int, Any]],
        log_required: tuple[str, ...],
        start: Mapping[str, tuple[int, Any]],
        start_required: tuple[str, ...],
        limits: Mapping[str, int],
    ) -> None:
        self._k = kinds
        self._limits = limits
        self._label_depth = limits["log_labels_depth"]
        metric = msgspec.defstruct(
            "Metric",
            [
                ("name", Annotated[str, Meta(min_length=1, max_length=64)]),  # + _name_ok
                ("kind", Literal["counter", "gauge", "histogram"]),
                ("value", Union[self._int_any(), self._float_any()]),  # noqa: UP007
                (
                    "labels",
                    Annotated[
                        dict[
                            Annotated[str, Meta(min_length=1, max_length=64)],  # + _name_ok
                            Annotated[str, Meta(max_length=limits["metric_label_value"])],
                        ],
                        Meta(max_length=limits["metric_labels"]),
                    ]
                    | UnsetType,
                    UNSET,
                ),
                (
                    "unit",
                    Annotated[str, Meta(max_length=limits["metric_unit"])] | UnsetType,
                    UNSET,
                ),
                (
                    "count",
                    Annotated[int, Meta(ge=1, le=limits["histogram_count"])] | UnsetType,
                    UNSET,
                ),
                ("sum", Union[self._int_any(), self._float_any()] | UnsetType, UNSET),  # noqa: UP007
            ],
            kw_only=True,
            forbid_unknown_fields=True,
            omit_defaults=True,
        )
        self._metric = metric
        res_struct = self._struct("Resource", resource, (), None)
        inv_struct = self._struct("Invocation", inv, inv_required, "inv")
        log_struct = self._struct("Log", log, log_required, "log")
        start_struct = self._struct("Start", start, start_required, "start")
        event: Any = Union[inv_struct, log_struct, start_struct]  # noqa: UP007
        envelope = msgspec.defstruct(
            "Envelope",
            [
                ("v", int),
                ("src", Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}\Z")]),
                ("seq", Annotated[int, Meta(ge=1, le=(1 << 63) - 1)]),
                (
                    "ev",
                    Annotated[
                        list[event],
                        Meta(min_length=1, max_length=limits["events"]),
                    ],
                ),
                # Raw: a process sends the same resource in every frame, so it is
                # validated once per distinct value (see resource()), not per frame.
                ("res", Union[msgspec.Raw, UnsetType], UNSET),  # noqa: UP007
            ],
            kw_only=True,
            forbid_unknown_fields=True,
        )
        self._decode: Callable[[bytes], Any] = msgspec.json.Decoder(envelope).decode
        self._decode_res: Callable[[Any], Any] = msgspec.json.Decoder(res_struct).decode
        # raw resource JSON -> (its dict, its members serialized): see resource()
        self._resources: dict[bytes, tuple[dict[str, Any], bytes]] = {}
        self.encode: Callable[[Any], bytes] = msgspec.json.Encoder().encode
        self.inv_type: type = inv_struct
        self.log_type: type = log_struct
        self.start_type: type = start_struct
        # The resource fields an event may override, read in one C call.
        self._overrides = operator.attrgetter(*[_attr(k) for k in resource])
        self._log_labels = operator.attrgetter(_attr("labels"))
        self._inv_metrics = operator.attrgetter(_attr("metrics"))
        # The number fields of an invocation that may hold a float.
        self._inv_floats = operator.attrgetter(
            *[_attr(k) for k, (code, _) in inv.items() if code == kinds["num"]]
        )
        self._ids = operator.attrgetter(
            *[_attr(k) for k, (code, _) in inv.items() if code == kinds["hex"]]
        )
        hex_ids = {k for k, (c, _) in inv.items() if c == kinds["hex"]}
        for other in (log, start):
            if {k for k, (c, _) in other.items() if c == kinds["hex"]} != hex_ids:
                raise ValueError("every event type must have the same hex id fields")

    @staticmethod
    def _int_any() -> Any:
        return Annotated[int, Meta(ge=_INT_MIN, le=_INT_MAX)]

    @staticmethod
    def _float_any() -> Any:
        return Annotated[float, Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX)]

    def _type(self, code: int, lim: Any) -> Any:
        k = self._k
        if code == k["str"]:
            return Annotated[str, Meta(max_length=lim)]
        if code == k["uint"]:
            return Annotated[int, Meta(ge=0, le=lim)]
        if code == k["num"]:
            return Union[  # noqa: UP007
                Annotated[int, Meta(ge=0, le=_INT_MAX)],
                Annotated[float, Meta(ge=0, le=_FLOAT_MAX)],
            ]
        if code == k["bool"]:
            return bool
        if code == k["enum"]:
            return Literal[tuple(sorted(lim))]
        if code == k["hex"]:
            # Exact length here, the digits in decode(): a pattern costs a regex call.
            return Annotated[str, Meta(min_length=lim, max_length=lim)]
        if code == k["exec"]:
            return Annotated[str, Meta(min_length=1, max_length=lim)]
        limits = self._limits
        if code == k["inv_labels"]:
            key = Annotated[str, Meta(max_length=MAX_LABEL_KEY)]
            value = Annotated[str, Meta(max_length=limits["inv_label_value"])]
            return Annotated[dict[key, value], Meta(max_length=limits["inv_labels"])]
        if code == k["log_labels"]:
            return Annotated[dict[str, Any], Meta(max_length=limits["log_labels"])]
        if code == k["metrics"]:
            return Annotated[list[self._metric], Meta(max_length=limits["metrics"])]  # type: ignore[name-defined]
        raise ValueError(f"no fast type for field kind {code}")

    def _struct(
        self,
        name: str,
        spec: Mapping[str, tuple[int, Any]],
        required: tuple[str, ...],
        tag: str | None,
    ) -> type:
        fields: list[Any] = []
        for key, (code, lim) in spec.items():
            if key == "t":
                continue
            typ = self._type(code, lim)
            if key in required:
                fields.append((_attr(key), typ, msgspec.field(name=key)))
            else:
                fields.append((_attr(key), typ | UnsetType, msgspec.field(default=UNSET, name=key)))
        options: dict[str, Any] = {"tag_field": "t", "tag": tag} if tag else {}
        return msgspec.defstruct(
            name,
            fields,
            kw_only=True,
            forbid_unknown_fields=True,
            omit_defaults=True,
            **options,
        )

    def decode(self, body: bytes) -> tuple[Any, int] | None:
        """The envelope struct of a frame body that is certainly valid and the float
        slack of its numbers (see :func:`float_slack`), else None."""
        try:
            env = self._decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            # RecursionError: nested deeper than msgspec goes (the reference path's
            # parser has its own limit and says bad_json).
            return None
        if env.v != 1:
            return None
        log_type = self.log_type
        inv_type = self.inv_type
        labels_of = self._log_labels
        metrics_of = self._inv_metrics
        floats_of = self._inv_floats
        ids_of = self._ids
        slack = 0
        slack_of = _SLACK.get
        for ev in env.ev:
            for hex_id in ids_of(ev):
                if hex_id is not UNSET and hex_id.strip(_HEX_DIGITS):
                    return None  # not lowercase hex
            if type(ev) is log_type:
                labels = labels_of(ev)
                if labels is not UNSET:
                    s = _labels_exact(labels, self._label_depth)
                    if s < 0:
                        return None  # nested or unusual values: the reference path judges
                    slack += s
            elif type(ev) is inv_type:
                labels = labels_of(ev)
                if labels is not UNSET and not all(map(_key_ok, labels)):
                    return None
                for x in floats_of(ev):
                    if type(x) is float:
                        s = slack_of(x, -1)
                        slack += s if s >= 0 else float_slack(x)
                metrics = metrics_of(ev)
                if metrics is not UNSET:
                    for m in metrics:
                        if (m.kind == "counter" and m.value < 0) or not _name_ok(m.name):
                            return None
                        if m.kind != "histogram" and (m.count is not UNSET or m.sum is not UNSET):
                            return None  # the reference path rejects it with its reason
                        if m.labels is not UNSET and not all(map(_name_ok, m.labels)):
                            return None
                        if type(m.value) is float:
                            slack += float_slack(m.value)
                        if type(m.sum) is float:
                            slack += float_slack(m.sum)
        return env, slack

    def resource(self, raw: Any) -> tuple[dict[str, Any], bytes] | None:
        """The validated resource of a frame (``{}`` if absent) and its serialized members.

        None when it is not certainly valid. Cached per distinct raw value: callers
        must not modify the dict.
        """
        if raw is UNSET:
            return _NO_RESOURCE
        key = bytes(raw)
        hit = self._resources.get(key)
        if hit is not None:
            return hit
        try:
            res = to_dict(self._decode_res(key))
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return None
        if len(self._resources) >= _RESOURCES_MAX:  # many senders: start over, stay bounded
            self._resources.clear()
        hit = self._resources[key] = (res, dumps_members(res))
        return hit

    def overrides(self, ev: Any) -> bool:
        """True if the event sets any resource field (it then overrides the resource's)."""
        values = self._overrides(ev)
        return values.count(UNSET) != len(values)


def _name_ok(name: str) -> bool:
    """``[a-zA-Z_][a-zA-Z0-9_]*`` (length is bounded by the decoder), without a regex."""
    return name.isascii() and name.isidentifier()


def _key_ok(key: str) -> bool:
    """A label key the protocol takes: U+0000 nowhere (its length is bounded by the
    decoder, or checked by :func:`_labels_exact`)."""
    return "\x00" not in key


def _labels_exact(labels: dict[str, Any], depth: int) -> int:
    """The float slack of ``labels`` (>= 0) if it nests at most ``depth`` levels (itself
    included), every key in it is one the protocol takes and every scalar is one both
    JSON parsers read alike; else -1."""
    slack = 0
    for k, v in labels.items():
        if len(k) > MAX_LABEL_KEY or "\x00" in k:
            return -1
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        s = _value_exact(v, t, depth)
        if s < 0:
            return -1
        slack += s
    return slack


def _value_exact(v: Any, t: type, depth: int) -> int:
    """:func:`_labels_exact` for one value that is not a string, boolean or null."""
    if t is int:
        return 0 if _INT_MIN <= v <= _INT_MAX else -1
    if t is float:
        if not math.isfinite(v):
            return -1
        s: int = _SLACK.get(v, -1)
        return s if s >= 0 else float_slack(v)
    if depth <= 1:
        return -1
    if t is dict:
        return _labels_exact(v, depth - 1)
    if t is list:
        slack = 0
        for item in v:
            ti = type(item)
            if ti is str or ti is bool or item is None:
                continue
            s = _value_exact(item, ti, depth - 1)
            if s < 0:
                return -1
            slack += s
        return slack
    return -1


_SLACK: dict[float, int] = {}


def float_slack(x: float) -> int:
    """How many bytes shorter than its encoding here ``x`` could be written in JSON
    (``100000.0`` as ``1e5``: 5). Frames are compared by length with their
    re-encoding; the slack says how much shorter numbers could hide. Cached."""
    slack = _SLACK.get(x)
    if slack is not None:
        return slack
    canonical = len(msgspec.json.encode(x))
    sign, digits, exp = Decimal(repr(x)).as_tuple()
    text = "".join(map(str, digits))
    stripped = text.rstrip("0") or "0"
    k = int(exp) + len(text) - len(stripped)  # x = stripped * 10**k
    shortest = len(stripped) + 1 + len(str(k))  # "<digits>e<k>"
    if k >= 0:
        shortest = min(shortest, len(stripped) + k)  # an integer literal
    else:
        shortest = min(shortest, max(len(stripped), -k + 1) + 1)  # "d.ddd" or "0.0dd"
    slack = max(0, canonical - shortest - sign)
    if len(_SLACK) > 4096:
        _SLACK.clear()
    _SLACK[x] = slack
    return slack


def to_dict(struct: Any) -> dict[str, Any]:
    """A struct as the dict the reference path would have parsed (wire key names)."""
    out: dict[str, Any] = msgspec.to_builtins(struct)
    return out


def dumps_members(d: dict[str, Any]) -> bytes:
    """``d`` serialized without its braces, plus a comma ("" for an empty dict)."""
    return orjson.dumps(d)[1:-1] + b"," if d else b""

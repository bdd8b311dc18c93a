"""Hostile frames for fuzzing the worker: a hypothesis strategy over the frame grammar
(docs/protocol.md) and byte-level mutations of valid frames. Used by the fuzz test
and by bench/fuzz_worker.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from faaslens.ingest.validate import INV_FIELDS, LOG_FIELDS, RESOURCE_FIELDS

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
KEYS = {"k1": "secret"}

# Values of every JSON type, the edges of the protocol's ranges among them.
_INTS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 253_402_300_799_999]),
)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=60, max_size=300),
    st.sampled_from(["", "inv", "log", "success", "info", "error", "a" * 129, "\x00", '"']),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _INTS, _FLOATS, _TEXT)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = sorted({*INV_FIELDS, *LOG_FIELDS, *RESOURCE_FIELDS, "labels", "metrics", "unit"})


@st.composite
def _metric(draw: st.DrawFn) -> Any:
    m = {
        "name": draw(st.one_of(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _TEXT)),
        "kind": draw(st.sampled_from(["counter", "gauge", "histogram", "summary"])),
        "value": draw(st.one_of(_INTS, _FLOATS)),
    }
    if draw(st.booleans()):
        m["labels"] = draw(st.dictionaries(st.text(max_size=6), _TEXT, max_size=6))
    if draw(st.booleans()):
        m["unit"] = draw(_TEXT)
    return m if draw(st.integers(0, 9)) else draw(_JSON)


@st.composite
def _event(draw: st.DrawFn) -> Any:
    ts = 1_764_028_800_000 + draw(st.one_of(st.just(0), st.integers(-(10**13), 10**13)))
    base: dict[str, Any] = draw(
        st.sampled_from(
            [
                {
                    "t": "inv",
                    "faas.execution": "e",
                    "@timestamp": ts,
                    "event.duration": 1,
                    "event.outcome": "success",
                    "faas.coldstart": False,
                },
                {
                    "t": "log",
                    "@timestamp": ts,
                    "event.sequence": 0,
                    "log.level": "info",
                    "message": "m",
                },
                {"t": draw(_TEXT)},
            ]
        )
    )
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=3)):
        base[key] = draw(_JSON)
    if not draw(st.integers(0, 3)):
        base["labels"] = draw(st.dictionaries(st.text(max_size=10), _JSON, max_size=5))
    if base.get("t") == "inv" and draw(st.booleans()):
        base["metrics"] = draw(st.lists(_metric(), max_size=4))
    if not draw(st.integers(0, 4)):
        base.pop(draw(st.sampled_from(sorted(base))), None)
    return base if draw(st.integers(0, 19)) else draw(_JSON)


def _dumps(value: Any, duplicate: bool, spaced: bool) -> str:
    """JSON text of ``value`` (NaN and big integers as written), maybe with the first
    key of the outermost object repeated, maybe with whitespace."""
    text = json.dumps(
        value, separators=(", ", " : ") if spaced else (",", ":"), ensure_ascii=spaced
    )
    if duplicate and isinstance(value, dict) and value:
        key, first = next(iter(value.items()))
        text = "{" + json.dumps(key) + ":" + json.dumps(first) + "," + text[1:]
    return text


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One frame: an envelope built from the grammar with hostile parts, or raw bytes."""
    if not draw(st.integers(0, 9)):
        return draw(st.binary(max_size=200))

    def mostly(valid: Any, hostile: st.SearchStrategy[Any]) -> Any:
        return draw(hostile) if not draw(st.integers(0, 9)) else valid

    env: dict[str, Any] = {
        "v": mostly(1, _SCALARS),
        "src": mostly("fuzz", _TEXT),
        "seq": mostly(draw(st.integers(1, 2**63 - 1)), _SCALARS),
        "ev": draw(st.lists(_event(), min_size=0, max_size=6)),
    }
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(sorted(RESOURCE_FIELDS)), max_size=3))
        env["res"] = {k: mostly("r" if RESOURCE_FIELDS[k][0] == 1 else 1, _JSON) for k in keys}
    if not draw(st.integers(0, 9)):
        env[draw(st.text(max_size=5))] = draw(_JSON)
    body = _dumps(env, duplicate=not draw(st.integers(0, 9)), spaced=not draw(st.integers(0, 9)))
    data = body.encode("utf-8", "surrogatepass")
    if not draw(st.integers(0, 9)):
        data = draw(st.sampled_from([b"[" * 2000, b"[" * 900])) + data
    how = draw(st.integers(0, 9))
    if how == 0:
        return sign(data)
    if how == 1:
        return b"s1 k1 " + b"0" * 64 + b" " + data
    return data


def sign(body: bytes) -> bytes:
    digest = hmac.new(KEYS["k1"].encode(), body, hashlib.sha256).hexdigest().encode()
    return b"s1 k1 " + digest + b" " + body


def corpus() -> list[bytes]:
    """Valid frames: the protocol's test vectors that are accepted."""
    return sorted(p.read_bytes() for p in VECTORS.glob("shipper_*.frame"))


def mutations(seed: bytes, rng: random.Random, n: int) -> Iterator[bytes]:
    """``n`` byte-level mutations of a valid frame (what a fuzzer does to it)."""
    for _ in range(n):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(7)
            i = rng.randrange(len(data)) if data else 0
            if op == 0 and data:
                data[i] ^= 1 << rng.randrange(8)  # bit flip
            elif op == 1:
                data.insert(i, rng.randrange(256))
            elif op == 2 and data:
                del data[i : i + rng.randint(1, 8)]
            elif op == 3:
                data = data[: rng.randrange(len(data) + 1)]  # truncated
            elif op == 4 and data:
                j = rng.randrange(len(data))
                data[i:i] = data[j : j + rng.randint(1, 40)]  # a slice repeated
            elif op == 5:
                data[i:i] = rng.choice(
                    [b'"v":1,', b"[", b"{", b"\\u0000", b"\\", b"1e999", b"\xff"]
                )
            else:
                j = rng.randrange(len(data) + 1)
                data[i:j] = data[i:j][::-1] if j > i else b""
        yield bytes(data)

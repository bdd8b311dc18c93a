"""The fast (typed) path and the reference path of validation agree on every frame.

The fast path may only accept frames, and must then produce exactly what the
reference path produces; everything else falls through to the reference.
Checked on the test vectors and on thousands of mutations of valid frames.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from faaslens.ingest.validate import FrameResult, Validator
from tests.vectors.generate import json_of

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

FAST = Validator()
REFERENCE = Validator(fast=False)

HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    -0.0,
    2**63,
    2**64,
    2**70,
    -(2**63) - 1,
    1e308,
    float("inf"),
    float("nan"),
    "",
    "x",
    "x" * 300,
    "é" * 129,
    "0" * 32 + "\n",
    "ABCDEF" * 4,
    "ABCDEF0123456789" * 2,
    "0" * 31 + "g",
    "0" * 15 + " ",
    "1abc",
    "a-b",
    "é",
    [{"name": "1m", "kind": "counter", "value": 1}],
    [{"name": "m", "kind": "counter", "value": 1, "labels": {"a b": "c"}}],
    [{"name": "m", "kind": "histogram", "value": 1e308, "labels": {"_ok": "c"}}],
    "f" * 32,
    "f" * 16,
    "info",
    "failure",
    "http",
    [],
    [1, [2, [3, [4, [5]]]]],
    {},
    {"a": {"b": {"c": {"d": {"e": 1}}}}},
    {"k": "v"},
    {"k": 2**70},
    [{"name": "m", "kind": "counter", "value": -1}],
    [{"name": "m", "kind": "gauge", "value": -1, "labels": {"a": "b"}}],
    [{"name": "m", "kind": "counter", "value": 1, "extra": 1}],
]


def summary(r: FrameResult) -> dict[str, Any]:
    return {
        "rejected": r.rejected,
        "docs": [(d.kind, d.doc_id, d.day, orjson.loads(d.source)) for d in r.docs],
        "invocations": r.invocations,
        "starts": r.starts,
        "event_rejections": r.event_rejections,
        "unknown_fields": r.unknown_fields,
        "src": r.src,
        "seq": r.seq,
    }


def agree(frame: bytes) -> None:
    fast, ref = summary(FAST.validate(frame)), summary(REFERENCE.validate(frame))
    assert fast == ref, frame


def valid_frames() -> list[bytes]:
    from _worker_frames import frame, templates

    out = [p.read_bytes() for p in sorted(VECTORS.glob("shipper_*.frame"))]
    tpl = templates(60)
    out += [frame(tpl, seq) for seq in range(1, 61)]
    return out


def encode(env: dict[str, Any]) -> bytes:
    """JSON as any sender may write it: big integers included (orjson refuses them)."""
    return json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode()


def mutations(frame: bytes, rng: random.Random) -> Iterator[bytes]:
    """Each field of each event (and of the resource, and the envelope) set to odd values."""
    try:
        env = orjson.loads(json_of(frame))
    except orjson.JSONDecodeError:
        return
    targets: list[dict[str, Any]] = [env]
    if isinstance(env.get("res"), dict):
        targets.append(env["res"])
    targets += [e for e in env.get("ev", []) if isinstance(e, dict)]
    for target in targets:
        for key in [*target, "unknown.key"]:
            for value in rng.sample(HOSTILE_VALUES, 8):
                saved = target.get(key, KeyError)
                target[key] = value
                yield encode(env)
                if saved is KeyError:
                    del target[key]
                else:
                    target[key] = saved
            saved = target.pop(key, KeyError)
            yield encode(env)
            if saved is not KeyError:
                target[key] = saved


def test_fast_path_accepts_what_shippers_send() -> None:
    """Valid frames take the fast path (else it would be pointless)."""
    from faaslens.ingest.validate import _fast_decoder

    fast = _fast_decoder()
    frames = valid_frames()
    accepted = [f for f in frames if f[:1] != b"s" and fast.decode(f) is not None]
    unsigned = [f for f in frames if f[:1] != b"s"]  # s1 / s2: signed
    assert len(accepted) == len(unsigned)


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.frame")), ids=lambda p: p.stem)
def test_vectors_agree(path: Path) -> None:
    agree(path.read_bytes())


def test_mutated_frames_agree() -> None:
    rng = random.Random(7)
    n = 0
    for frame in valid_frames():
        for mutated in mutations(frame, rng):
            agree(mutated)
            n += 1
    assert n > 2000


def test_resource_override_and_error_logs_agree() -> None:
    env = {
        "v": 1,
        "src": "a",
        "seq": 3,
        "res": {"service.name": "s", "faas.name": "f"},
        "ev": [
            {
                "t": "log",
                "@timestamp": 1,
                "event.sequence": 0,
                "log.level": "error",
                "message": "m",
                "service.name": "override",
                "error.type": "E",
            },
            {
                "t": "log",
                "@timestamp": 2,
                "event.sequence": 1,
                "log.level": "critical",
                "message": "m",
                "error.type": "E",
                "labels": {"n": 1, "f": 0.5, "b": False, "z": None},
            },
            {"t": "log", "@timestamp": 3, "event.sequence": 2, "log.level": "info", "message": ""},
        ],
    }
    agree(orjson.dumps(env))
    del env["res"]
    agree(orjson.dumps(env))
    # duplicate keys: the last one wins in both parsers
    agree(b'{"v":1,"src":"a","seq":1,"seq":2,"ev":[{"t":"log","@timestamp":1,'
          b'"event.sequence":0,"log.level":"info","message":"a","message":"b"}]}')  # fmt: skip

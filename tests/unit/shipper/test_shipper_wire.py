"""Packing, limits, truncation and signing, checked against the worker's validator."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from faaslens.ingest.validate import Validator
from faaslens.protocol import MARKER, UDP_MAX
from faaslens.shipper.logs import Logger
from faaslens.shipper.wire import Packer, Signer, dumps, truncate
from tests.unit.shipper.kit import Receiver, by_type, make_shipper, receivers


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def test_truncate_keeps_the_limit_including_the_marker() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("x" * 100, 50)
    assert len(cut) == 50 and cut.endswith(MARKER)


def test_dumps_never_raises_on_user_data() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd!"

    cyclic: list[Any] = []
    cyclic.append(cyclic)
    data = orjson.loads(dumps({"o": Odd(), "big": 1 << 80, 3: {1, 2}, "cyc": cyclic}))
    assert data["o"] == "odd!"
    assert data["big"] == str(1 << 80)
    assert data["3"] == [1, 2]


def _events(n: int, size: int) -> list[dict[str, Any]]:
    return [
        {
            "t": "log",
            "@timestamp": 1,
            "event.sequence": i,
            "log.level": "info",
            "message": "m" * size,
            "faas.execution": "e1",
        }
        for i in range(n)
    ]


def test_packing_under_the_datagram_size_with_res_in_every_frame() -> None:
    seq = itertools.count(1)
    packer = Packer("src-1", 1400, UDP_MAX)
    res = orjson.dumps({"faas.name": "f", "cloud.provider": "aws"})
    frames = packer.pack(res, _events(20, 200), seq.__next__)
    assert len(frames) > 1
    seen = []
    validator = Validator()
    for i, frame in enumerate(frames, start=1):
        assert len(frame) <= 1400
        env = orjson.loads(frame)
        assert env["seq"] == i
        assert env["res"] == {"faas.name": "f", "cloud.provider": "aws"}
        seen += [ev["event.sequence"] for ev in env["ev"]]
        result = validator.validate(frame)
        assert result.rejected is None and not result.event_rejections
    assert seen == list(range(20))
    # as few frames as fit: each frame holds as many events as possible
    per_event = len(orjson.dumps(_events(1, 200)[0])) + 1
    assert len(frames) <= -(-20 * per_event // (1400 - len(res) - 60)) + 1


def test_one_big_event_goes_alone_and_is_cut_to_the_hard_limit() -> None:
    seq = itertools.count(1)
    packer = Packer("src-1", 1400, 4000)
    frames = packer.pack(
        b"{}", [*_events(1, 10), *_events(1, 3000), *_events(1, 9000)], seq.__next__
    )
    sizes = [len(f) for f in frames]
    assert len(frames) == 3
    assert sizes[1] > 1400  # oversize but under the hard limit: sent whole
    assert sizes[2] <= 4000
    last = orjson.loads(frames[2])["ev"][0]
    assert last["message"].endswith(MARKER)
    assert packer.oversize == 2 and packer.shrunk == 1


def test_signed_frames_verify(rx: Receiver) -> None:
    sh = make_shipper(rx, hmac_key="s3cret", hmac_key_id="prod-1")
    sh.instrument(lambda: None)()
    (frame,) = rx.frames()
    prefix, key_id, stamp, sig, body = frame.split(b" ", 4)
    assert prefix == b"s2" and key_id == b"prod-1"
    signed = stamp + b" " + body
    assert sig == hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest().encode()
    ms = int(stamp)
    ok = Validator(
        hmac_keys={"prod-1": "s3cret"}, require_signature=True, clock_ms=lambda: ms + 1000
    ).validate(frame)
    assert ok.rejected is None and len(ok.docs) == 1
    bad = Validator(hmac_keys={"prod-1": "other"}, clock_ms=lambda: ms).validate(frame)
    assert bad.rejected == "bad_signature"
    # The same frame, replayed past the worker's window, is stale.
    late = Validator(
        hmac_keys={"prod-1": "s3cret"}, signature_max_age_s=60, clock_ms=lambda: ms + 61_000
    )
    assert late.validate(frame).rejected == "stale"


def test_signer_overhead_kept_under_the_datagram_size() -> None:
    signer = Signer("k1", "key")
    packer = Packer("src", 1400, UDP_MAX, signer)
    frames = packer.pack(b'{"faas.name":"f"}', _events(30, 100), itertools.count(1).__next__)
    assert all(len(f) <= 1400 for f in frames)


def test_limits_truncated_as_the_worker_checks_them(rx: Receiver) -> None:
    sh = make_shipper(rx, max_datagram=65_000)
    log = Logger("l" * 300, shipper=sh)

    @sh.instrument
    def handler() -> None:
        log.info(
            "m" * 40_000,
            deep={"a": {"b": {"c": {"d": {"e": 1}}}}},
            **{f"k{i}": i for i in range(80)},
        )
        raise ValueError("v" * 10_000)

    with pytest.raises(ValueError):
        handler()
    frames = rx.frames()
    validator = Validator()
    docs = 0
    for frame in frames:
        result = validator.validate(frame)
        assert result.rejected is None
        assert result.event_rejections == []
        docs += len(result.docs)
    assert docs == 3  # the invocation, its error document, the log line
    events = [ev for f in frames for ev in orjson.loads(f)["ev"]]
    inv = by_type(events, "inv")[0]
    assert len(inv["error.message"]) == 8 * 1024 and inv["error.message"].endswith(MARKER)
    line = by_type(events, "log")[0]
    assert len(line["message"]) == 32 * 1024
    assert len(line["log.logger"]) == 256
    assert len(line["labels"]) == 64
    assert line["labels"]["_truncated_keys"] == 81 - 63
    assert isinstance(line["labels"]["deep"]["a"]["b"], str)  # flattened past the depth limit
    assert sh.snapshot()["truncated"] == 1

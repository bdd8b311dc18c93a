"""Replays: signed frames carry their signing time and expire; the aggregates count
an invocation record once, whatever the transport repeats."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from prometheus_client import CollectorRegistry

from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.recent import RecentKeys
from faaslens.ingest.signature import Verifier
from tests.unit.ingest.test_aggregates import LABELS, record

NOW = 1_764_028_800_000
BODY = orjson.dumps({"v": 1, "src": "s", "seq": 1, "ev": [{"t": "x"}]})


def stamped(ms: int, body: bytes = BODY, key: bytes = b"secret", key_id: bytes = b"k1") -> bytes:
    stamp = str(ms).encode()
    sig = hmac.new(key, stamp + b" " + body, hashlib.sha256).hexdigest().encode()
    return b"s2 " + key_id + b" " + stamp + b" " + sig + b" " + body


def verifier(max_age_s: float = 60.0) -> Verifier:
    return Verifier({"k1": "secret"}, max_age_s=max_age_s, clock_ms=lambda: NOW)


@pytest.mark.parametrize(
    ("signed_at", "want"),
    [
        (NOW, BODY),
        (NOW - 59_999, BODY),
        (NOW + 60_000, BODY),  # the sender's clock a minute ahead
        (NOW - 60_001, "stale"),
        (NOW + 60_001, "stale"),
        (0, "stale"),
        (10**15 - 1, "stale"),
    ],
)
def test_signed_time_window(signed_at: int, want: bytes | str) -> None:
    assert verifier().unwrap(stamped(signed_at)) == want


@pytest.mark.parametrize(
    "frame",
    [
        stamped(NOW).replace(str(NOW).encode(), str(NOW - 1).encode(), 1),  # time changed
        stamped(NOW, key=b"other"),
        b"s2 k1 " + str(NOW).encode() + b" " + b"0" * 64 + b" " + BODY,
        b"s2 k1 12x4 " + b"0" * 64 + b" " + BODY,  # time not digits
        b"s2 k1 " + b"1" * 16 + b" " + b"0" * 64 + b" " + BODY,  # time too long
        b"s2 k1 " + str(NOW).encode() + b" " + BODY,  # no signature
        b"s2 k1",
        b"s2 ",
    ],
)
def test_tampered_or_malformed_stamped_frames(frame: bytes) -> None:
    assert verifier().unwrap(frame) == "bad_signature"


def test_unknown_key_and_unsigned() -> None:
    assert verifier().unwrap(stamped(NOW, key_id=b"k9")) == "unknown_key"
    assert verifier().unwrap(BODY) == BODY
    strict = Verifier({"k1": "secret"}, require=True, clock_ms=lambda: NOW)
    assert strict.unwrap(BODY) == "unsigned"


def test_aggregates_count_a_repeated_record_once() -> None:
    reg = CollectorRegistry()
    agg = Aggregates(reg)
    records = [record(**{"faas.execution": f"e-{i}"}) for i in range(1000)]
    for rec in records:
        agg.observe(dict(rec), 0.0)
    for rec in records:  # every record again: a replay or a transport repeat
        agg.observe(dict(rec), 1.0)
    labels = LABELS
    assert reg.get_sample_value("faas_invocations_total", labels) == 1000
    assert reg.get_sample_value("faaslens_invocations_repeated_total") == 1000
    # Another attempt of the same invocation (same id, its own start) counts.
    agg.observe(record(**{"faas.execution": "e-1"}), 2.0)
    assert reg.get_sample_value("faas_invocations_total", labels) == 1001


def test_recent_keys_window_and_bound() -> None:
    keys = RecentKeys(window_s=10.0, max_keys=100)
    assert keys.first_time(1, 0.0) and not keys.first_time(1, 4.0)
    assert keys.first_time(2, 6.0)  # half a window passed: a new generation
    assert not keys.first_time(1, 7.0)  # still remembered (old generation)
    assert keys.first_time(3, 12.0)  # rotates again: key 1 is forgotten
    assert keys.first_time(1, 12.5)
    bounded = RecentKeys(window_s=1e9, max_keys=100)
    for k in range(10_000):
        bounded.first_time(k, 0.0)
    assert len(bounded) <= 200
    assert not bounded.first_time(9_999, 0.0)

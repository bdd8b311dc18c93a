"""The definitions both sides share: one table each, and the values they hold."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from faaslens import protocol
from faaslens.backoff import Backoff, backoff_delay
from faaslens.ingest.events import IndexKind
from faaslens.values import parse_bool

REPO = Path(__file__).resolve().parents[3]


def test_the_typed_index_kinds_are_the_protocol_ones() -> None:
    assert get_args(IndexKind) == protocol.INDEX_KINDS


def test_the_validator_checks_exactly_the_protocol_resource_fields() -> None:
    from faaslens.ingest.validate import RESOURCE_FIELDS

    assert set(RESOURCE_FIELDS) == protocol.RESOURCE_KEYS


def test_level_tables_agree() -> None:
    assert set(protocol.LEVEL_NAMES.values()) == protocol.LEVELS
    assert set(protocol.LEVEL_ALIASES.values()) == protocol.LEVELS
    assert protocol.ERROR_LEVELS <= protocol.LEVELS
    assert sorted(protocol.LEVEL_NUMBERS.values()) == [10, 20, 30, 40, 50]


def test_docs_state_the_protocol_limits() -> None:
    """docs/protocol.md names the same numbers as the code."""
    text = (REPO / "docs" / "protocol.md").read_text()
    for number in (protocol.MAX_EVENTS, protocol.MAX_INV_LABELS, protocol.MAX_METRICS):
        assert re.search(rf"\b{number}\b", text), number


def test_histogram_buckets_scale_with_the_unit() -> None:
    """One scale per quantity: each spelling of a unit, and each multiple of a base unit,
    has the same buckets scaled (so ms and s histograms of one duration agree), and the
    default is the documented 0.01 .. 1e6 in steps 1 / 2.5 / 5."""
    hb = protocol.histogram_buckets
    seconds = hb("s")
    for unit, factor in (("ms", 1e3), ("us", 1e6), ("µs", 1e6), ("ns", 1e9)):
        assert hb(unit) == tuple(round(b * factor, 9) for b in seconds), unit
    for unit, skip, divisor in (("kib", 3, 1024), ("mib", 6, 1024**2)):
        assert hb(unit) == tuple(b / divisor for b in hb("bytes")[skip:]), unit
    for a, b in (("sec", "seconds"), ("by", "b"), ("%", "percent"), ("ratio", "fraction")):
        assert hb(a) == hb(b) != hb(None)
    steps = (1.0, 2.5, 5.0)
    assert hb(None) == (*(round(m * 10.0**e, 6) for e in range(-2, 6) for m in steps), 1e6)
    assert hb("MS") == hb("ms") and hb("widgets") == hb("") == hb(None)
    assert hb(None) == protocol.HISTOGRAM_BUCKETS
    assert protocol.UNIT_BUCKETS["bytes"] == hb("Bytes")


def test_histogram_bucket_table_is_read_on_first_use_not_at_import() -> None:
    """The shipper imports faaslens.protocol in every cold start: the file waits."""
    code = (
        "import faaslens.shipper.record, faaslens.protocol as p; a = len(p._loaded); "
        "p.histogram_buckets('s'); print(a, len(p._loaded))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.split() == ["0", "1"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"default": []}, "non-empty list of bounds"),
        ({"default": [1.0, 1.0]}, "bounds must increase"),
        ({"default": [0.0, 1.0]}, "finite positive"),
        ({"default": [1.0, "2"]}, "is not a number"),
        ({"default": [1.0, True]}, "is not a number"),
        ({"units": {}}, "'units' list"),
        ({"units": [{"names": [], "bounds": [1.0]}]}, "'names' list"),
        ({"units": [{"names": ["MS"], "bounds": [1.0]}]}, "lower-case"),
        ({"units": [{"names": ["s"], "bounds": [1.0]}, {"names": ["s"], "bounds": [2.0]}]},
         "listed twice"),
    ],
)  # fmt: skip
def test_a_malformed_bucket_table_is_refused_with_its_reason(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    table = json.loads(Path(protocol.BUCKETS_FILE).read_text()) | change
    path = tmp_path / "buckets.json"
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError, match=message):
        protocol.load_histogram_buckets(str(path))
    path.write_text("{not json")
    with pytest.raises(ValueError):
        protocol.load_histogram_buckets(str(path))


def test_no_literal_copy_of_a_limit_or_level_table_remains() -> None:
    """Limits and level tables are imported from faaslens.protocol, not restated."""
    offenders = []
    patterns = [
        re.compile(r'\{\s*"debug"\s*:\s*10'),
        re.compile(r'frozenset\(\{"debug", "info"'),
        re.compile(r'\("invocations", "logs", "errors"\)'),
    ]
    limits = [n for n in dir(protocol) if n.startswith("MAX_") or n.endswith("_DEPTH")]
    # A module restating a protocol limit under its own name (e.g. _MAX_EVENTS = 1000).
    patterns.append(re.compile(rf"^\s*_?(?:{'|'.join(limits)})\s*(?::[^=]*)?=", re.M))
    for folder in ("shipper", "ingest", "faaslens/query"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            offenders += [f"{path.name}: {p.pattern}" for p in patterns if p.search(text)]
    assert offenders == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), ("1", True), ("YES", True), (" on ", True), ("0", False), ("Off", False)],
)
def test_parse_bool_words(raw: object, expected: bool) -> None:
    assert parse_bool(raw) is expected


def test_parse_bool_empty_keeps_the_default_and_refuses_without_one() -> None:
    assert parse_bool("", default=True) is True
    assert parse_bool("  ", default=False) is False
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool("")
    with pytest.raises(ValueError, match="maybe"):
        parse_bool("maybe", default=True)


def test_backoff_is_capped_jittered_and_resets() -> None:
    assert backoff_delay(0, 0.1, 10, rand=lambda: 0.0) == pytest.approx(0.05)
    assert backoff_delay(60, 0.1, 10, rand=lambda: 1.0) == pytest.approx(10)
    b = Backoff(0.1, 1.0, rand=lambda: 1.0)
    assert [round(b.next(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next() == pytest.approx(0.1)
    assert all(0.05 <= backoff_delay(0, 0.1, 10) <= 0.1 for _ in range(100))

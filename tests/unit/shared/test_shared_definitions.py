"""The definitions both sides share: one table each, and the values they hold."""

from __future__ import annotations

import re
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

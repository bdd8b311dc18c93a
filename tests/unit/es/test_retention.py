"""Which daily indices retention deletes (by the date in the name)."""

from __future__ import annotations

from datetime import date

import pytest

from faaslens.ingest.sink_es.retention import expired, index_day

TODAY = date(2026, 11, 25)


def test_index_day_parses_only_our_daily_names() -> None:
    assert index_day("fl-logs-2026.11.18", "fl") == date(2026, 11, 18)
    assert index_day("fl-errors-2020.01.01", "fl") == date(2020, 1, 1)
    assert index_day("fl-logs-2026.02.31", "fl") is None  # not a date
    assert index_day("fl-metrics-2026.11.18", "fl") is None
    assert index_day("fl-logs-2026.11.18-restored", "fl") is None
    assert index_day("flx-logs-2026.11.18", "fl") is None
    assert index_day("fl-team-logs-2026.11.18", "fl") is None


def test_cutoff_is_today_minus_retention_days() -> None:
    names = [f"fl-logs-2026.11.{d:02d}" for d in range(15, 26)] + ["fl-invocations-2025.01.01"]
    assert expired(names, "fl", TODAY, 7) == [
        "fl-invocations-2025.01.01",
        "fl-logs-2026.11.15",
        "fl-logs-2026.11.16",
        "fl-logs-2026.11.17",
    ]
    assert expired(names, "fl", TODAY, 0)[-1] == "fl-logs-2026.11.24"


def test_other_prefixes_and_names_are_never_touched() -> None:
    names = ["other-logs-2001.01.01", "fl-logs", ".kibana", "fl-logs-2001.01.01"]
    assert expired(names, "fl", TODAY, 7) == ["fl-logs-2001.01.01"]


def test_negative_retention_is_refused() -> None:
    with pytest.raises(ValueError):
        expired([], "fl", TODAY, -1)

"""Pure parts of ``faaslens query``: time arguments, request bodies, rendering."""

from __future__ import annotations

import pytest

from faaslens.query import render
from faaslens.query.client import (
    ErrorGroup,
    InvocationFilter,
    InvocationView,
    errors_search,
    invocation_searches,
    invocations_search,
    parse_error_groups,
)
from faaslens.query.timespec import TimeSpecError, format_ms, parse_time

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("15m", NOW - 15 * 60_000),
        ("2h", NOW - 7_200_000),
        ("1.5d", NOW - 129_600_000),
        ("2026-11-25T10:00:00Z", 1_795_600_800_000),
        ("2026-11-25T11:00:00+01:00", 1_795_600_800_000),
        ("2026-11-25T10:00", 1_795_600_800_000),  # naive = UTC
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, now_ms=NOW) == expected


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(TimeSpecError, match="bad time"):
        parse_time("yesterday")


def test_format_ms() -> None:
    assert format_ms(1_795_600_800_123) == "2026-11-25T10:00:00.123Z"
    assert format_ms(None) == "-"
    assert format_ms("2026-11-25T10:00:00Z") == "2026-11-25T10:00:00Z"


def test_invocation_lookup_is_one_msearch_by_keyword_term() -> None:
    searches = invocation_searches("faaslens", "abc")
    assert [h["index"] for h in searches[::2]] == [
        "faaslens-invocations-*",
        "faaslens-logs-*",
        "faaslens-errors-*",
    ]
    for body in searches[1::2]:
        assert body["query"] == {"bool": {"filter": [{"term": {"faas.execution": "abc"}}]}}
    # Every attempt of the id (platforms redeliver with the same one), lines attempt by attempt.
    assert searches[1]["size"] > 1
    assert [next(iter(k)) for k in searches[1]["sort"]] == ["faas.attempt", "@timestamp"]
    assert [next(iter(k)) for k in searches[3]["sort"]][:2] == ["faas.attempt", "event.sequence"]


def test_invocations_filter_body() -> None:
    body = invocations_search(
        InvocationFilter(
            function="f",
            outcome="failure",
            coldstart=False,
            min_duration_ms=2.5,
            since_ms=10,
            limit=5,
        )
    )
    filters = body["query"]["bool"]["filter"]
    assert {"term": {"faas.name": "f"}} in filters
    assert {"term": {"faas.coldstart": False}} in filters
    assert {"range": {"event.duration": {"gte": 2_500_000}}} in filters
    assert {"range": {"@timestamp": {"gte": 10, "format": "epoch_millis"}}} in filters
    assert body["size"] == 5
    assert body["sort"] == [{"@timestamp": "desc"}]


def test_errors_body_and_parsing() -> None:
    body = errors_search("timed out", since_ms=1, limit=3)
    assert body["query"]["bool"]["must"][0]["simple_query_string"]["query"] == "timed out"
    assert body["aggs"]["fingerprints"]["terms"]["size"] == 3
    response = {
        "aggregations": {
            "fingerprints": {
                "buckets": [
                    {
                        "key": "fp",
                        "doc_count": 4,
                        "first_seen": {"value": 100.0},
                        "last_seen": {"value": 200.0},
                        "functions": {"buckets": [{"key": "f", "doc_count": 4}]},
                        "sample": {
                            "hits": {
                                "hits": [
                                    {
                                        "_source": {
                                            "error.type": "E",
                                            "error.message": "m",
                                            "faas.execution": "x",
                                        }
                                    }
                                ]
                            }
                        },
                    }
                ]
            }
        }
    }
    (group,) = parse_error_groups(response)
    assert group == ErrorGroup("fp", 4, 100, 200, "E", "m", "x", ["f"])


def test_table_aligns_and_cuts_the_last_column() -> None:
    text = render.table(["a", "bb"], [["xxx", "y" * 50]], width=20)
    lines = text.splitlines()
    assert lines[0] == "a    bb"
    assert lines[2].startswith("xxx  y")
    assert lines[2].endswith("…")
    assert len(lines[2]) <= 20


def test_humanized_values() -> None:
    assert render.duration_ns(812_000) == "812µs"
    assert render.duration_ns(12_345_678) == "12.3ms"
    assert render.duration_ns(1_520_000_000) == "1.52s"
    assert render.one_line("a\n  b\tc") == "a b c"
    assert render.one_line(True) == "yes"
    assert render.one_line({"b": "2", "a": "1"}) == '{"a":"1","b":"2"}'
    assert render.usd(0.0000021) == "$0.0000021"


def test_invocation_view_without_record() -> None:
    view = InvocationView("id", None, logs=[{"event.sequence": 0, "message": "hi"}])
    assert view.found
    text = render.invocation_view(view, width=80)
    assert "no invocation record" in text
    assert "hi" in text
    assert not InvocationView("id", None).found

"""The dashboard building blocks in grafana/kit.py: placement, ids, refIds, queries."""

from __future__ import annotations

import json

from grafana.kit import PROM, Board, prom, quantiles, rate, stat, timeseries


def _placed(widths: tuple[int, ...]) -> list[tuple[int, int, int]]:
    board = Board("faaslens-test", "test").add(
        *[timeseries(f"w{w}", prom("up", ""), w=w, h=8) for w in widths]
    )
    panels = json.loads(board.to_json())["panels"]
    return [(p["id"], p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]


def test_a_panel_that_would_cross_column_24_starts_a_new_row() -> None:
    # grafana-foundation-sdk's own placement puts the third at x=18 (ending at column 30).
    assert _placed((6, 12, 12)) == [(1, 0, 0), (2, 6, 0), (3, 0, 8)]
    assert _placed((12, 24, 6, 6, 6, 6)) == [
        (1, 0, 0),
        (2, 0, 8),
        (3, 0, 16),
        (4, 6, 16),
        (5, 12, 16),
        (6, 18, 16),
    ]


def test_rows_are_as_tall_as_their_tallest_panel() -> None:
    board = Board("faaslens-test", "test").add(
        stat("s", prom("up", ""), unit="short", w=12, h=4),
        timeseries("t", prom("up", ""), w=12, h=9),
        timeseries("u", prom("up", ""), w=24),
    )
    positions = [p["gridPos"] for p in json.loads(board.to_json())["panels"]]
    assert [(g["x"], g["y"]) for g in positions] == [(0, 0), (12, 0), (0, 9)]


def test_queries_get_ref_ids_in_order_and_the_panel_their_datasource() -> None:
    board = Board("faaslens-test", "test").add(
        timeseries("q", quantiles("faas_invoke_duration_seconds", ["0.5", "0.99"]))
    )
    (panel,) = json.loads(board.to_json())["panels"]
    assert [t["refId"] for t in panel["targets"]] == ["A", "B"]
    assert [t["legendFormat"] for t in panel["targets"]] == ["p50 {{function}}", "p99 {{function}}"]
    assert panel["datasource"] == {"type": PROM.type_val, "uid": PROM.uid}
    assert all(t["range"] and not t["instant"] for t in panel["targets"])


def test_rate_sums_by_the_given_labels_or_over_everything() -> None:
    assert rate("m_total", selector='a="1"', window="5m") == (
        'sum by (function) (rate(m_total{a="1"}[5m]))'
    )
    assert rate("m_total", by="", selector='a="1"', window="5m") == 'sum(rate(m_total{a="1"}[5m]))'

"""Errors: which errors are new since the deploy (search, grouped by fingerprint)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import elasticsearch as es

from grafana.kit import (
    ES_ERR,
    INVOCATION_LINK,
    UID_ERRORS,
    Board,
    by_term_over_time,
    count,
    documents,
    es_query,
    es_terms_var,
    link_override,
    table,
    terms,
    textbox,
    timeseries,
    transformation,
    unit_override,
)

#: Free text (raw Lucene) plus the two pickers.
ERR_FILTER = "(${q:raw}) AND error.type:${error_type:lucene} AND faas.name:${function:lucene}"


def build() -> Board:
    board = Board(UID_ERRORS, "faaslens / Errors", time_from="now-24h")
    board.variables(
        textbox("q", "*", label="search"),
        es_terms_var("error_type", ES_ERR, "error.type", label="error type"),
        es_terms_var("function", ES_ERR, "faas.name"),
    )
    last_seen = es.Max().id("5").field("@timestamp")
    by_type = by_term_over_time(ES_ERR, ERR_FILTER, "error.type", 10)
    return board.add(
        timeseries("Errors over time by type", by_type, w=24, h=7),
        table(
            "Top fingerprints",
            [
                es_query(
                    ES_ERR,
                    ERR_FILTER,
                    [count(), es.Min().id("4").field("@timestamp"), last_seen],
                    [terms("2", "error.grouping_key", 25), terms("3", "error.type", 1)],
                ),
                # The newest invocation of each fingerprint: a terms of size 1 ordered by
                # the latest @timestamp (core aggregations only, no top_metrics).
                es_query(
                    ES_ERR,
                    ERR_FILTER,
                    [last_seen],
                    [
                        terms("2", "error.grouping_key", 25),
                        terms("3", "faas.execution", 1, order_by="5"),
                    ],
                ),
            ],
            h=10,
            transformations=[
                transformation("joinByField", {"byField": "error.grouping_key", "mode": "outer"}),
                transformation(
                    "organize",
                    {
                        "renameByName": {
                            "error.grouping_key": "fingerprint",
                            "Count": "count",
                            "Min @timestamp": "first seen",
                            "Max @timestamp": "last seen",
                            "faas.execution": "example invocation",
                        }
                    },
                ),
            ],
            overrides=[
                unit_override("first seen", "dateTimeAsIso"),
                unit_override("last seen", "dateTimeAsIso"),
                link_override("example invocation", INVOCATION_LINK),
            ],
            description="Grouped by error.grouping_key: first/last seen over the time range.",
        ),
        documents(
            "Error search",
            ES_ERR,
            ERR_FILTER,
            200,
            h=12,
            columns="@timestamp faas.name error.type error.message faas.execution log.level "
            "error.grouping_key",
            overrides=[link_override("faas.execution", INVOCATION_LINK)],
        ),
    )

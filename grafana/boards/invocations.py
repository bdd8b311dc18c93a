"""Invocations: find invocations, then one invocation's record, log lines and error."""

from __future__ import annotations

from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.builders import table as table_panel

from grafana.kit import (
    ES_ERR,
    ES_INV,
    ES_LOGS,
    INVOCATION_LINK,
    UID_INVOCATIONS,
    Board,
    adhoc,
    by_term_over_time,
    custom_var,
    documents,
    es_terms_var,
    link_override,
    textbox,
    timeseries,
    transformation,
    unit_override,
    wrap_override,
)

#: The search filters above the list (Lucene; each variable is "All" = * by default).
INV_FILTER = (
    "faas.name:${function:lucene} AND event.outcome:${outcome:lucene} AND "
    "faas.coldstart:${coldstart:lucene} AND event.duration:>=${min_duration_ms}000000"
)
#: The invocation picked in the list (or reached by a link): its id is exact, not analysed.
ONE_INVOCATION = 'faas.execution:"${invocation_id}"'
#: Invocations settled as unfinished by the worker (a start, no record by timeout + grace).
UNFINISHED_FILTER = (
    "event.outcome:unknown AND _exists_:event.reason AND faas.name:${function:lucene}"
)
#: Columns of the unfinished list, in order.
UNFINISHED_COLUMNS = "@timestamp faas.name faas.execution faas.timeout event.reason cloud.region"
#: Columns of the invocation list, in order.
LIST_COLUMNS = (
    "@timestamp faas.name faas.execution event.outcome faas.coldstart event.duration "
    "faas.mem_usage faas.cost.usd error.type cloud.region"
)


def _invocation_list(  # noqa: PLR0917 - one panel's parts, in reading order
    title: str,
    lucene: str,
    size: int,
    columns: str,
    rename: dict[str, str],
    units: dict[str, str],
    *,
    h: int = 10,
    description: str,
) -> table_panel.Panel:
    """A list of invocation documents whose ids open the invocation (below, or by link)."""
    return documents(
        title,
        ES_INV,
        lucene,
        size,
        columns=columns,
        rename=rename,
        h=h,
        overrides=[
            link_override("faas.execution", INVOCATION_LINK),
            *(unit_override(column, unit) for column, unit in units.items()),
        ],
        description=description,
    )


def build() -> Board:
    board = Board(UID_INVOCATIONS, "faaslens / Invocations", refresh="")
    board.variables(
        es_terms_var("function", ES_INV, "faas.name"),
        custom_var("outcome", ["success", "failure", "unknown"]),
        custom_var("coldstart", ["true", "false"]),
        textbox("min_duration_ms", "0", label="min duration (ms)"),
        textbox("invocation_id", "", label="invocation id"),
        # Any other field: Grafana adds these filters to every query on this datasource.
        adhoc("filters", ES_INV),
    )
    percentiles = (
        es.Percentiles()
        .id("1")
        .field("event.duration")
        .settings(es.ElasticsearchPercentilesSettings().percents(["50", "95", "99"]))
    )
    by_outcome = by_term_over_time(ES_INV, INV_FILTER, "event.outcome", 5)
    by_function = by_term_over_time(ES_INV, INV_FILTER, "faas.name", 10, [percentiles])
    return board.add(
        timeseries("Invocations by outcome", by_outcome, w=12, h=7),
        timeseries(
            "Duration percentiles by function (ms)",
            by_function,
            unit="ns",
            w=12,
            h=7,
            description="From event.duration (nanoseconds), per function.",
        ),
        _invocation_list(
            "Recent invocations",
            INV_FILTER,
            200,
            LIST_COLUMNS,
            {"event.duration": "duration", "faas.mem_usage": "memory"},
            {"duration": "ns", "memory": "bytes", "faas.cost.usd": "currencyUSD"},
            description="Click an invocation id to show its record, logs and error below.",
        ),
        _invocation_list(
            "Unfinished invocations (started, never finished)",
            UNFINISHED_FILTER,
            100,
            UNFINISHED_COLUMNS,
            {"faas.timeout": "timeout", "event.reason": "reason"},
            {"timeout": "ns"},
            h=7,
            description="No record came by the function's timeout plus the worker's grace "
            "period: the process died mid-invocation (out of memory, a native crash, os._exit, "
            "a timeout the in-process watchdog could not beat). Click an id for the log lines "
            "that left before the end.",
        ),
        documents(
            "Invocation ${invocation_id}: record",
            ES_INV,
            ONE_INVOCATION,
            1,
            h=6,
            description="Every field of the invocation record (one row: scroll sideways).",
        ),
        documents(
            "Invocation ${invocation_id}: log lines in order",
            ES_LOGS,
            ONE_INVOCATION,
            1000,
            first=[
                transformation("sortBy", {"sort": [{"field": "event.sequence", "desc": False}]})
            ],
            columns="event.sequence @timestamp log.level log.logger message",
        ),
        documents(
            "Invocation ${invocation_id}: error",
            ES_ERR,
            ONE_INVOCATION,
            10,
            columns="@timestamp error.type error.message error.grouping_key error.stack_trace",
            overrides=[wrap_override("error.stack_trace")],
        ),
    )

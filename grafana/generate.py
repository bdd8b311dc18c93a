"""Generate the Grafana dashboards in ``grafana/dashboards/`` from Python.

Dashboards are built here rather than edited by hand so that every panel uses
the same label selectors, datasource uids and links. Run::

    python grafana/generate.py          # rewrite the JSON files
    python grafana/generate.py --check  # exit 1 if a file is out of date

Datasource uids are fixed by ``grafana/provisioning/datasources/faaslens.yml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"

PROM = {"type": "prometheus", "uid": "faaslens-prom"}
ES_INV = {"type": "elasticsearch", "uid": "faaslens-es-invocations"}
ES_LOGS = {"type": "elasticsearch", "uid": "faaslens-es-logs"}
ES_ERR = {"type": "elasticsearch", "uid": "faaslens-es-errors"}

UID_OVERVIEW = "faaslens-overview"
UID_INVOCATIONS = "faaslens-invocations"
UID_ERRORS = "faaslens-errors"
UID_WORKER = "faaslens-worker"

# Every aggregate panel filters on the same bounded labels.
SEL = 'function=~"$function", environment=~"$environment", provider=~"$provider", region=~"$region"'
RI = "$__rate_interval"

# A link from any cell holding an invocation id to the Invocations dashboard.
INVOCATION_LINK = {
    "title": "Open invocation ${__value.raw}",
    "url": f"/d/{UID_INVOCATIONS}/faaslens-invocations?var-invocation_id=${{__value.raw}}"
    "&${__url_time_range}",
}

Json = dict[str, Any]


class Layout:
    """Hands out gridPos rectangles left to right, top to bottom, and panel ids."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> Json:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def pid(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _refs() -> Iterator[str]:
    yield from "ABCDEFGHIJ"


def prom_target(expr: str, legend: str, *, exemplar: bool = False, instant: bool = False) -> Json:
    return {
        "datasource": PROM,
        "expr": expr,
        "legendFormat": legend,
        "exemplar": exemplar,
        "instant": instant,
        "range": not instant,
    }


def timeseries(
    lay: Layout,
    title: str,
    targets: list[Json],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    description: str = "",
    repeat: str | None = None,
) -> Json:
    refs = _refs()
    panel: Json = {
        "id": lay.pid(),
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "gridPos": lay.place(w, h),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [{**t, "refId": next(refs)} for t in targets],
    }
    if repeat:
        panel["repeat"] = repeat
        panel["repeatDirection"] = "h"
        panel["maxPerRow"] = 2
    return panel


def table(
    lay: Layout,
    title: str,
    targets: list[Json],
    *,
    w: int = 24,
    h: int = 9,
    unit: str = "short",
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    description: str = "",
) -> Json:
    refs = _refs()
    return {
        "id": lay.pid(),
        "type": "table",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "gridPos": lay.place(w, h),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": overrides or []},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": transformations or [],
        "targets": [{**t, "refId": next(refs)} for t in targets],
    }


def stat(lay: Layout, title: str, target: Json, *, unit: str, w: int = 6, h: int = 4) -> Json:
    return {
        "id": lay.pid(),
        "type": "stat",
        "title": title,
        "datasource": target["datasource"],
        "gridPos": lay.place(w, h),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        },
        "targets": [{**target, "refId": "A"}],
    }


def link_override(field: str, link: Json) -> Json:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": "links", "value": [link]}],
    }


def unit_override(field: str, unit: str) -> Json:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": "unit", "value": unit}],
    }


def prom_var(name: str, query: str, *, label: str = "", multi: bool = True) -> Json:
    return {
        "name": name,
        "label": label or name,
        "type": "query",
        "datasource": PROM,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
        "allValue": ".*" if multi else None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "sort": 1,
        "regex": "",
    }


def es_terms_var(name: str, ds: Json, field: str, *, label: str = "") -> Json:
    query = json.dumps({"find": "terms", "field": field, "size": 500})
    return {
        "name": name,
        "label": label or name,
        "type": "query",
        "datasource": ds,
        "query": query,
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        # A custom all value is inserted unformatted: matches any value.
        "allValue": "*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "regex": "",
    }


def custom_var(name: str, values: list[str], *, label: str = "") -> Json:
    return {
        "name": name,
        "label": label or name,
        "type": "custom",
        "query": ",".join(values),
        "includeAll": True,
        "multi": True,
        "allValue": "*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
    }


def textbox(name: str, default: str, *, label: str = "") -> Json:
    return {
        "name": name,
        "label": label or name,
        "type": "textbox",
        "query": default,
        "current": {"text": default, "value": default},
    }


def dashboard(uid: str, title: str, panels: list[Json], variables: list[Json], **kw: Any) -> Json:
    return {
        "uid": uid,
        "title": title,
        "tags": ["faaslens"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": kw.get("refresh", "30s"),
        "time": {"from": kw.get("time_from", "now-6h"), "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [
            {
                "title": "faaslens",
                "type": "dashboards",
                "tags": ["faaslens"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "panels": panels,
    }


# --------------------------------------------------------------------------- Overview


def _quantiles(metric: str, quantiles: tuple[str, ...], *, exemplar: bool = False) -> list[Json]:
    return [
        prom_target(
            f"histogram_quantile({q}, sum by (le, function) "
            f"(rate({metric}_bucket{{{SEL}}}[{RI}])))",
            f"p{q[2:].ljust(2, '0')} {{{{function}}}}",
            exemplar=exemplar,
        )
        for q in quantiles
    ]


def _ratio(numerator: str, denominator: str, by: str = "function") -> str:
    """numerator / denominator per ``by``; 0 (not a gap) when the numerator has no series."""
    num = f"sum by ({by}) (rate({numerator}{{{SEL}}}[{RI}]))"
    den = f"sum by ({by}) (rate({denominator}{{{SEL}}}[{RI}]))"
    return f"({num} or {den} * 0) / {den}"


def overview() -> Json:
    lay = Layout()
    panels = [
        stat(
            lay,
            "Invocations/s",
            prom_target(f"sum(rate(faas_invocations_total{{{SEL}}}[{RI}]))", "all"),
            unit="reqps",
        ),
        stat(
            lay,
            "Error ratio",
            prom_target(
                f"(sum(rate(faas_errors_total{{{SEL}}}[{RI}])) or vector(0))"
                f" / sum(rate(faas_invocations_total{{{SEL}}}[{RI}]))",
                "all",
            ),
            unit="percentunit",
        ),
        stat(
            lay,
            "p95 duration",
            prom_target(
                "histogram_quantile(0.95, sum by (le) "
                f"(rate(faas_invoke_duration_seconds_bucket{{{SEL}}}[{RI}])))",
                "p95",
            ),
            unit="s",
        ),
        stat(
            lay,
            "Estimated cost, last 24h",
            prom_target(f"sum(increase(faas_cost_usd_total{{{SEL}}}[1d]))", "USD"),
            unit="currencyUSD",
        ),
        timeseries(
            lay,
            "Invocations/s by function",
            [
                prom_target(
                    f"sum by (function) (rate(faas_invocations_total{{{SEL}}}[{RI}]))",
                    "{{function}}",
                )
            ],
            unit="reqps",
        ),
        timeseries(
            lay,
            "Error % by function",
            [prom_target(_ratio("faas_errors_total", "faas_invocations_total"), "{{function}}")],
            unit="percentunit",
            description="Failed invocations (event.outcome = failure) over all invocations.",
        ),
        timeseries(
            lay,
            "Duration p50 / p95 / p99",
            _quantiles("faas_invoke_duration_seconds", ("0.5", "0.95", "0.99"), exemplar=True),
            unit="s",
            w=24,
            description="Handler duration from the histogram. Exemplar dots carry the "
            "invocation id: click one to open the invocation.",
        ),
        timeseries(
            lay,
            "Cold starts",
            [
                prom_target(
                    f"sum by (function) (increase(faas_coldstarts_total{{{SEL}}}[{RI}]))",
                    "{{function}}",
                )
            ],
        ),
        timeseries(
            lay,
            "Cold-start ratio",
            [
                prom_target(
                    _ratio("faas_coldstarts_total", "faas_invocations_total"), "{{function}}"
                )
            ],
            unit="percentunit",
        ),
        timeseries(
            lay,
            "Init duration p50 / p95 (cold starts)",
            _quantiles("faas_init_duration_seconds", ("0.5", "0.95")),
            unit="s",
        ),
        timeseries(
            lay,
            "Memory used (p95 peak RSS) vs configured",
            [
                prom_target(
                    "histogram_quantile(0.95, sum by (le, function) "
                    f"(rate(faas_mem_usage_bytes_bucket{{{SEL}}}[{RI}])))",
                    "used p95 {{function}}",
                ),
                # GB-seconds / billed seconds = configured GiB: no extra series needed.
                prom_target(
                    f"sum by (function) (rate(faas_billed_gb_seconds_total{{{SEL}}}[{RI}]))"
                    " / sum by (function) "
                    f"(rate(faas_billed_duration_seconds_total{{{SEL}}}[{RI}]))"
                    " * 1073741824",
                    "configured {{function}}",
                ),
            ],
            unit="bytes",
        ),
        table(
            lay,
            "Billed GB-seconds and estimated cost per function (last 24h)",
            [
                prom_target(
                    f"sum by (function) (increase(faas_billed_gb_seconds_total{{{SEL}}}[1d]))",
                    "",
                    instant=True,
                ),
                prom_target(
                    f"sum by (function) (increase(faas_cost_usd_total{{{SEL}}}[1d]))",
                    "",
                    instant=True,
                ),
                prom_target(
                    f"sum by (function) (rate(faas_cost_usd_total{{{SEL}}}[1h])) * 86400",
                    "",
                    instant=True,
                ),
            ],
            w=24,
            h=8,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "Value #A": "GB-seconds (24h)",
                            "Value #B": "cost USD (24h)",
                            "Value #C": "cost USD/day at the last hour's rate",
                        },
                    },
                },
            ],
            overrides=[
                unit_override("cost USD (24h)", "currencyUSD"),
                unit_override("cost USD/day at the last hour's rate", "currencyUSD"),
            ],
            description="increase() over counters: safe across worker restarts.",
        ),
        timeseries(
            lay,
            "Estimated cost per function, USD/day (at the current rate)",
            [
                prom_target(
                    f"sum by (function) (rate(faas_cost_usd_total{{{SEL}}}[{RI}])) * 86400",
                    "{{function}}",
                )
            ],
            unit="currencyUSD",
            w=24,
        ),
        timeseries(
            lay,
            "Custom counter $custom_counter (per second)",
            [
                prom_target(
                    'sum by (function) (rate({__name__=~"$custom_counter", '
                    f'function=~"$function"}}[{RI}]))',
                    "{{function}}",
                )
            ],
            repeat="custom_counter",
        ),
        timeseries(
            lay,
            "Custom gauges",
            [
                prom_target(
                    'max by (__name__, function) ({__name__=~"faas_custom_.+", '
                    '__name__!~"faas_custom_.+_(total|created|bucket|count|sum)", '
                    'function=~"$function"})',
                    "{{__name__}} {{function}}",
                )
            ],
        ),
        timeseries(
            lay,
            "Custom histogram $custom_histogram p95",
            [
                prom_target(
                    'histogram_quantile(0.95, sum by (le, function) (rate({__name__=~"'
                    f'$custom_histogram", function=~"$function"}}[{RI}])))',
                    "{{function}}",
                )
            ],
            repeat="custom_histogram",
        ),
    ]
    variables = [
        prom_var("function", "label_values(faas_invocations_total, function)"),
        prom_var("environment", "label_values(faas_invocations_total, environment)"),
        prom_var("provider", "label_values(faas_invocations_total, provider)"),
        prom_var("region", "label_values(faas_invocations_total, region)"),
        {
            **prom_var("custom_counter", "metrics(^faas_custom_.+_total$)"),
            "label": "custom counter",
            "hide": 2,
        },
        {
            **prom_var("custom_histogram", "metrics(^faas_custom_.+_bucket$)"),
            "label": "custom histogram",
            "hide": 2,
        },
    ]
    return dashboard(UID_OVERVIEW, "faaslens / Overview", panels, variables)


# --------------------------------------------------------------------------- Invocations


def es_target(
    ds: Json, query: str, metrics: list[Json], bucket_aggs: list[Json] | None = None
) -> Json:
    return {
        "datasource": ds,
        "query": query,
        "alias": "",
        "metrics": metrics,
        "bucketAggs": bucket_aggs or [],
        "timeField": "@timestamp",
    }


def raw_data(size: int = 500) -> list[Json]:
    return [{"id": "1", "type": "raw_data", "settings": {"size": str(size)}}]


def date_histogram(agg_id: str = "2") -> Json:
    return {
        "id": agg_id,
        "type": "date_histogram",
        "field": "@timestamp",
        "settings": {"interval": "auto", "min_doc_count": "0", "trimEdges": "0"},
    }


def terms(agg_id: str, field: str, size: int, order_by: str = "_count") -> Json:
    return {
        "id": agg_id,
        "type": "terms",
        "field": field,
        "settings": {"order": "desc", "orderBy": order_by, "size": str(size), "min_doc_count": "1"},
    }


def organize(columns: list[str], rename: dict[str, str] | None = None) -> Json:
    return {
        "id": "organize",
        "options": {
            "indexByName": {c: i for i, c in enumerate(columns)},
            "renameByName": rename or {},
            "includeByName": dict.fromkeys(columns, True),
        },
    }


INV_FILTER = (
    "faas.name:${function:lucene} AND event.outcome:${outcome:lucene} AND "
    "faas.coldstart:${coldstart:lucene} AND event.duration:>=${min_duration_ms}000000"
)
ONE_INVOCATION = 'faas.execution:"${invocation_id}"'


def invocations() -> Json:
    lay = Layout()
    panels = [
        timeseries(
            lay,
            "Invocations by outcome",
            [
                es_target(
                    ES_INV,
                    INV_FILTER,
                    [{"id": "1", "type": "count"}],
                    [terms("3", "event.outcome", 5), date_histogram("2")],
                )
            ],
            w=12,
            h=7,
        ),
        timeseries(
            lay,
            "Duration percentiles by function (ms)",
            [
                es_target(
                    ES_INV,
                    INV_FILTER,
                    [
                        {
                            "id": "1",
                            "type": "percentiles",
                            "field": "event.duration",
                            "settings": {"percents": ["50", "95", "99"]},
                        }
                    ],
                    [terms("3", "faas.name", 10), date_histogram("2")],
                )
            ],
            unit="ns",
            w=12,
            h=7,
            description="From event.duration (nanoseconds), per function.",
        ),
        table(
            lay,
            "Recent invocations",
            [es_target(ES_INV, INV_FILTER, raw_data(200))],
            h=10,
            transformations=[
                organize(
                    [
                        "@timestamp",
                        "faas.name",
                        "faas.execution",
                        "event.outcome",
                        "faas.coldstart",
                        "event.duration",
                        "faas.mem_usage",
                        "faas.cost.usd",
                        "error.type",
                        "cloud.region",
                    ],
                    {"event.duration": "duration", "faas.mem_usage": "memory"},
                )
            ],
            overrides=[
                link_override("faas.execution", INVOCATION_LINK),
                unit_override("duration", "ns"),
                unit_override("memory", "bytes"),
                unit_override("faas.cost.usd", "currencyUSD"),
            ],
            description="Click an invocation id to show its record, logs and error below.",
        ),
        table(
            lay,
            "Invocation ${invocation_id}: record",
            [es_target(ES_INV, ONE_INVOCATION, raw_data(1))],
            h=6,
            description="Every field of the invocation record (one row: scroll sideways).",
        ),
        table(
            lay,
            "Invocation ${invocation_id}: log lines in order",
            [es_target(ES_LOGS, ONE_INVOCATION, raw_data(1000))],
            h=10,
            transformations=[
                {"id": "sortBy", "options": {"sort": [{"field": "event.sequence", "desc": False}]}},
                organize(["event.sequence", "@timestamp", "log.level", "log.logger", "message"]),
            ],
        ),
        table(
            lay,
            "Invocation ${invocation_id}: error",
            [es_target(ES_ERR, ONE_INVOCATION, raw_data(10))],
            h=10,
            transformations=[
                organize(
                    [
                        "@timestamp",
                        "error.type",
                        "error.message",
                        "error.grouping_key",
                        "error.stack_trace",
                    ]
                )
            ],
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "error.stack_trace"},
                    "properties": [
                        {"id": "custom.cellOptions", "value": {"type": "auto", "wrapText": True}},
                        {"id": "custom.inspect", "value": True},
                    ],
                }
            ],
        ),
    ]
    variables = [
        es_terms_var("function", ES_INV, "faas.name"),
        custom_var("outcome", ["success", "failure", "unknown"]),
        custom_var("coldstart", ["true", "false"]),
        textbox("min_duration_ms", "0", label="min duration (ms)"),
        textbox("invocation_id", "", label="invocation id"),
        # Any other field: Grafana adds these filters to every query on this datasource.
        {
            "name": "filters",
            "label": "filters",
            "type": "adhoc",
            "datasource": ES_INV,
            "filters": [],
        },
    ]
    return dashboard(UID_INVOCATIONS, "faaslens / Invocations", panels, variables, refresh="")


# --------------------------------------------------------------------------- Errors

ERR_FILTER = "(${q:raw}) AND error.type:${error_type:lucene} AND faas.name:${function:lucene}"


def errors() -> Json:
    lay = Layout()
    panels = [
        timeseries(
            lay,
            "Errors over time by type",
            [
                es_target(
                    ES_ERR,
                    ERR_FILTER,
                    [{"id": "1", "type": "count"}],
                    [terms("3", "error.type", 10), date_histogram("2")],
                )
            ],
            w=24,
            h=7,
        ),
        table(
            lay,
            "Top fingerprints",
            [
                es_target(
                    ES_ERR,
                    ERR_FILTER,
                    [
                        {"id": "1", "type": "count"},
                        {"id": "4", "type": "min", "field": "@timestamp"},
                        {"id": "5", "type": "max", "field": "@timestamp"},
                    ],
                    [terms("2", "error.grouping_key", 25), terms("3", "error.type", 1)],
                ),
                # The newest invocation of each fingerprint: a terms of size 1 ordered by
                # the latest @timestamp (core aggregations only, no top_metrics).
                es_target(
                    ES_ERR,
                    ERR_FILTER,
                    [{"id": "5", "type": "max", "field": "@timestamp"}],
                    [
                        terms("2", "error.grouping_key", 25),
                        terms("3", "faas.execution", 1, order_by="5"),
                    ],
                ),
            ],
            h=10,
            transformations=[
                {
                    "id": "joinByField",
                    "options": {"byField": "error.grouping_key", "mode": "outer"},
                },
                {
                    "id": "organize",
                    "options": {
                        "renameByName": {
                            "error.grouping_key": "fingerprint",
                            "Count": "count",
                            "Min @timestamp": "first seen",
                            "Max @timestamp": "last seen",
                            "faas.execution": "example invocation",
                        }
                    },
                },
            ],
            overrides=[
                unit_override("first seen", "dateTimeAsIso"),
                unit_override("last seen", "dateTimeAsIso"),
                link_override("example invocation", INVOCATION_LINK),
            ],
            description="Grouped by error.grouping_key: first/last seen over the time range.",
        ),
        table(
            lay,
            "Error search",
            [es_target(ES_ERR, ERR_FILTER, raw_data(200))],
            h=12,
            transformations=[
                organize(
                    [
                        "@timestamp",
                        "faas.name",
                        "error.type",
                        "error.message",
                        "faas.execution",
                        "log.level",
                        "error.grouping_key",
                    ]
                )
            ],
            overrides=[link_override("faas.execution", INVOCATION_LINK)],
        ),
    ]
    variables = [
        textbox("q", "*", label="search"),
        es_terms_var("error_type", ES_ERR, "error.type", label="error type"),
        es_terms_var("function", ES_ERR, "faas.name"),
    ]
    return dashboard(UID_ERRORS, "faaslens / Errors", panels, variables, time_from="now-24h")


# --------------------------------------------------------------------------- Worker health


def worker() -> Json:
    lay = Layout()
    inst = 'instance=~"$instance"'
    panels = [
        stat(
            lay,
            "Elasticsearch reachable",
            prom_target(f"min(faaslens_es_up{{{inst}}})", "up", instant=True),
            unit="bool_yes_no",
        ),
        stat(
            lay,
            "Queue depth",
            prom_target(f"sum(faaslens_queue_depth{{{inst}}})", "queue"),
            unit="short",
        ),
        stat(
            lay,
            "Spool size",
            prom_target(f"sum(faaslens_spool_bytes{{{inst}}})", "spool"),
            unit="bytes",
        ),
        stat(
            lay,
            "Frames lost (range)",
            prom_target(
                f"sum(increase(faaslens_frames_lost_total{{{inst}}}[$__range]))"
                f" - sum(increase(faaslens_frames_late_total{{{inst}}}[$__range]))",
                "lost",
            ),
            unit="short",
        ),
        timeseries(
            lay,
            "Received",
            [
                prom_target(
                    f"sum(rate(faaslens_datagrams_received_total{{{inst}}}[{RI}]))",
                    "datagrams/s",
                ),
                prom_target(
                    f"sum by (type) (rate(faaslens_events_accepted_total{{{inst}}}[{RI}]))",
                    "accepted {{type}}/s",
                ),
            ],
        ),
        timeseries(
            lay,
            "Bytes received",
            [
                prom_target(
                    f"sum by (transport) (rate(faaslens_bytes_received_total{{{inst}}}[{RI}]))",
                    "{{transport}} bytes/s",
                )
            ],
            unit="Bps",
        ),
        timeseries(
            lay,
            "Rejected by reason",
            [
                prom_target(
                    f"sum by (reason) (rate(faaslens_frames_rejected_total{{{inst}}}[{RI}]))",
                    "frame {{reason}}",
                ),
                prom_target(
                    f"sum by (reason) (rate(faaslens_events_rejected_total{{{inst}}}[{RI}]))",
                    "event {{reason}}",
                ),
                prom_target(
                    f"sum(rate(faaslens_unknown_fields_total{{{inst}}}[{RI}]))",
                    "unknown fields dropped",
                ),
            ],
        ),
        timeseries(
            lay,
            "Lost",
            [
                prom_target(
                    f"sum(rate(faaslens_frames_lost_total{{{inst}}}[{RI}]))"
                    f" - sum(rate(faaslens_frames_late_total{{{inst}}}[{RI}]))",
                    "lost before the worker (sequence gaps, net of late frames)",
                ),
                prom_target(
                    f"sum by (reason) (rate(faaslens_frames_dropped_total{{{inst}}}[{RI}]))",
                    "dropped by the worker ({{reason}})",
                ),
                prom_target(
                    f"sum(rate(faaslens_udp_receive_buffer_drops_total{{{inst}}}[{RI}]))",
                    "of the gaps: kernel receive buffer",
                ),
            ],
            description="Frames that never reached the worker (sequence gaps, net of late "
            "frames) and frames the worker dropped itself are disjoint: their sum is what "
            "this worker lost. Kernel receive buffer drops are part of the gaps, not in "
            "addition. Gaps are exact only while each sender reaches one worker; across "
            "workers and restarts use `faaslens query loss`.",
        ),
        timeseries(
            lay,
            "Indexed / failed documents",
            [
                prom_target(
                    f"sum by (index_kind) (rate(faaslens_docs_indexed_total{{{inst}}}[{RI}]))",
                    "indexed {{index_kind}}",
                ),
                prom_target(
                    f"sum by (reason) (rate(faaslens_docs_failed_total{{{inst}}}[{RI}]))",
                    "failed {{reason}}",
                ),
                prom_target(
                    f"sum(rate(faaslens_dead_letter_total{{{inst}}}[{RI}]))",
                    "dead-lettered",
                ),
                prom_target(
                    f"sum by (reason) (rate(faaslens_bulk_retries_total{{{inst}}}[{RI}]))",
                    "bulk retries {{reason}}",
                ),
            ],
        ),
        timeseries(
            lay,
            "Bulk request latency",
            [
                prom_target(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(faaslens_bulk_duration_seconds_bucket{{{inst}}}[{RI}])))",
                    f"p{q[2:].ljust(2, '0')}",
                )
                for q in ("0.5", "0.95", "0.99")
            ],
            unit="s",
        ),
        timeseries(
            lay,
            "Queue depth and spool",
            [
                prom_target(f"sum(faaslens_queue_depth{{{inst}}})", "queue depth"),
                prom_target(f"sum(faaslens_spool_bytes{{{inst}}})", "spool bytes"),
            ],
            w=24,
        ),
    ]
    variables = [prom_var("instance", "label_values(faaslens_datagrams_received_total, instance)")]
    return dashboard(UID_WORKER, "faaslens / Worker health", panels, variables, time_from="now-1h")


DASHBOARDS = {
    "overview.json": overview,
    "invocations.json": invocations,
    "errors.json": errors,
    "worker-health.json": worker,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        path = OUT_DIR / name
        text = render(build)
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Turn the queries held by Grafana dashboards into real Prometheus and Elasticsearch requests.

No Grafana server runs in tests, so this module does what Grafana would do
with a dashboard: walk its panels, substitute template variables (with
Grafana's formatting rules per datasource type) and, for Elasticsearch
targets, build the search body Grafana's query builder sends (``query_string``
filter plus nested bucket aggregations and metric aggregations, or a sorted
raw document search). The test suite runs the results against the real
services; nothing here performs I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Json = dict[str, Any]

#: Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]], [[name:format]].
VARIABLE_RE = re.compile(
    r"\$(?P<plain>\w+)|\[\[(?P<brk>\w+?)(?::(?P<brkfmt>\w+))?\]\]"
    r"|\$\{(?P<brace>\w+)(?:\.(?P<path>[^:}]+))?(?::(?P<fmt>[^}]+))?\}"
)

# Characters Grafana's lucene format escapes (its luceneEscape).
_LUCENE_SPECIAL = re.compile(r'([!*+\-=<>\s&|()\[\]{}^~?:\\/"])')
# Characters the ${var:regex} format escapes.
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")
# The Prometheus datasource's own default: escaped with two backslashes, because the
# value lands inside a PromQL double-quoted string (its prometheusSpecialRegexEscape).
_PROM_REGEX_SPECIAL = re.compile(r"([$^*{}\[\]'+?.()|])")


class DashboardError(ValueError):
    """A dashboard holds something this module cannot translate."""


@dataclass(frozen=True, slots=True)
class PanelTarget:
    """One query of one panel (a repeated panel yields one per repeat value)."""

    dashboard: str
    panel: str
    ref_id: str
    datasource_type: str  # "prometheus" | "elasticsearch"
    datasource_uid: str
    target: Json
    repeat: str | None = None

    @property
    def label(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


@dataclass(slots=True)
class Variables:
    """Values of a dashboard's variables, and Grafana's built-in ones.

    ``values`` maps a variable to its selected values; a value of ``None``
    means "All" and inserts the variable's ``allValue`` unformatted, as Grafana
    does for custom all values.
    """

    values: Mapping[str, Sequence[str] | None]
    all_values: Mapping[str, str] = field(default_factory=dict)
    builtins: Mapping[str, str] = field(default_factory=dict)

    def interpolate(self, text: str, datasource_type: str) -> str:
        """Replace every known variable in ``text``; unknown ones stay as they are."""

        def replace(m: re.Match[str]) -> str:
            name = m.group("plain") or m.group("brk") or m.group("brace")
            fmt = m.group("fmt") or m.group("brkfmt")
            if name in self.builtins:
                return self.builtins[name]
            if name not in self.values:
                return m.group(0)
            selected = self.values[name]
            if selected is None:
                return self.all_values.get(name, "")
            return format_value(list(selected), fmt, datasource_type)

        return VARIABLE_RE.sub(replace, text)


def format_value(values: list[str], fmt: str | None, datasource_type: str) -> str:
    """Format selected values as Grafana does for ``${var:fmt}`` (or the datasource default)."""
    if fmt is None:
        # Prometheus formats multi values as a regex alternation; Elasticsearch as lucene.
        fmt = "promql_regex" if datasource_type == "prometheus" else "lucene"
    if fmt in ("raw", "csv"):
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt in ("regex", "promql_regex"):
        if fmt == "regex":
            escaped = [_REGEX_SPECIAL.sub(r"\\\1", v) for v in values]
        else:
            escaped = [
                _PROM_REGEX_SPECIAL.sub(r"\\\\\1", v.replace("\\", "\\\\\\\\")) for v in values
            ]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "lucene":
        escaped = [_LUCENE_SPECIAL.sub(r"\\\1", v) for v in values]
        if len(escaped) == 1:
            return escaped[0]
        return "(" + " OR ".join(f'"{v}"' for v in escaped) + ")"
    if fmt == "text":
        return " + ".join(values)
    raise DashboardError(f"unsupported variable format {fmt!r}")


def load_dashboards(directory: Path) -> dict[str, Json]:
    """Every ``*.json`` dashboard in ``directory``, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def _panels(panels: list[Json]) -> Iterator[Json]:
    for panel in panels:
        yield panel
        # Collapsed rows keep their panels nested.
        yield from _panels(panel.get("panels", []))


def iter_targets(dashboard: Json) -> Iterator[PanelTarget]:
    """Every query of every panel, with the datasource it runs on."""
    for panel in _panels(dashboard.get("panels", [])):
        panel_ds = panel.get("datasource") or {}
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel_ds
            if not ds.get("uid") or not ds.get("type"):
                raise DashboardError(f"{panel.get('title')}: target without datasource uid/type")
            yield PanelTarget(
                dashboard=dashboard["title"],
                panel=panel.get("title", ""),
                ref_id=target.get("refId", ""),
                datasource_type=ds["type"],
                datasource_uid=ds["uid"],
                target=target,
                repeat=panel.get("repeat"),
            )


def all_values(dashboard: Json) -> dict[str, str]:
    """The custom ``allValue`` of each variable that has one."""
    return {
        v["name"]: v["allValue"]
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("allValue") is not None
    }


# --------------------------------------------------------------------------- Prometheus

_LABEL_VALUES_RE = re.compile(r"^label_values\((?:(?P<match>.+),\s*)?(?P<label>\w+)\)$")
_METRICS_RE = re.compile(r"^metrics\((?P<regex>.+)\)$")


@dataclass(frozen=True, slots=True)
class PromVariableQuery:
    """A Prometheus variable query as an HTTP API call."""

    path: str  # e.g. /api/v1/label/function/values
    params: tuple[tuple[str, str], ...]
    name_filter: str | None = None  # regex applied to the returned values (metrics())


def prom_variable_query(query: str) -> PromVariableQuery:
    """Translate ``label_values(...)`` / ``metrics(...)`` like Grafana's Prometheus datasource."""
    query = query.strip()
    if m := _LABEL_VALUES_RE.match(query):
        params = (("match[]", m.group("match")),) if m.group("match") else ()
        return PromVariableQuery(f"/api/v1/label/{m.group('label')}/values", params)
    if m := _METRICS_RE.match(query):
        return PromVariableQuery("/api/v1/label/__name__/values", (), m.group("regex"))
    raise DashboardError(f"unsupported Prometheus variable query {query!r}")


# --------------------------------------------------------------------------- Elasticsearch

_SIMPLE_METRICS = ("avg", "sum", "min", "max", "cardinality", "extended_stats", "value_count")


def _metric_agg(metric: Json) -> Json | None:
    kind = metric["type"]
    settings = metric.get("settings", {})
    if kind == "count":
        return None  # doc_count of the enclosing bucket
    if kind in _SIMPLE_METRICS:
        return {kind: {"field": metric["field"]}}
    if kind == "percentiles":
        percents = [float(p) for p in settings.get("percents", ["25", "50", "75", "95", "99"])]
        return {"percentiles": {"field": metric["field"], "percents": percents}}
    if kind == "top_metrics":
        return {
            "top_metrics": {
                "metrics": [{"field": f} for f in settings["metrics"]],
                "sort": {settings["orderBy"]: settings.get("order", "desc")},
            }
        }
    raise DashboardError(f"unsupported Elasticsearch metric {kind!r}")


def _bucket_agg(agg: Json, time_field: str, time_from: int, time_to: int, interval: str) -> Json:
    settings = agg.get("settings", {})
    if agg["type"] == "date_histogram":
        raw = settings.get("interval", "auto")
        return {
            "date_histogram": {
                "field": agg.get("field", time_field),
                "fixed_interval": interval if raw in ("auto", "") else raw,
                "min_doc_count": int(settings.get("min_doc_count", 0)),
                "extended_bounds": {"min": time_from, "max": time_to},
                "format": "epoch_millis",
            }
        }
    if agg["type"] == "terms":
        order_by = settings.get("orderBy", "_count")
        return {
            "terms": {
                "field": agg["field"],
                "size": int(settings.get("size", 10)) or 500,
                "order": {order_by: settings.get("order", "desc")},
                "min_doc_count": int(settings.get("min_doc_count", 1)),
            }
        }
    raise DashboardError(f"unsupported Elasticsearch bucket aggregation {agg['type']!r}")


def es_search_body(
    target: Json, query: str, time_from: int, time_to: int, interval: str = "1m"
) -> Json:
    """The search body Grafana's Elasticsearch datasource sends for ``target``.

    ``query`` is the target's Lucene query with variables already substituted;
    ``time_from`` / ``time_to`` are epoch milliseconds; ``interval`` stands in
    for ``$__interval`` on auto date histograms.
    """
    time_field = target.get("timeField", "@timestamp")
    body: Json = {
        "query": {
            "bool": {
                "filter": [
                    {
                        "range": {
                            time_field: {
                                "gte": time_from,
                                "lte": time_to,
                                "format": "epoch_millis",
                            }
                        }
                    },
                    {"query_string": {"analyze_wildcard": True, "query": query or "*"}},
                ]
            }
        }
    }
    metrics = target.get("metrics") or [{"id": "1", "type": "count"}]
    first = metrics[0]
    if first["type"] in ("raw_data", "raw_document", "logs"):
        size = int(first.get("settings", {}).get("size", 500))
        order = first.get("settings", {}).get("sortDirection", "desc")
        body["size"] = size
        body["sort"] = [
            {time_field: {"order": order, "unmapped_type": "boolean"}},
            {"_doc": {"order": order}},
        ]
        if first["type"] == "logs":
            body["aggs"] = {
                "1": _bucket_agg(
                    {"type": "date_histogram", "field": time_field},
                    time_field,
                    time_from,
                    time_to,
                    interval,
                )
            }
        return body

    body["size"] = 0
    leaf: Json = {}
    for metric in metrics:
        agg = _metric_agg(metric)
        if agg is not None:
            leaf[metric["id"]] = agg
    bucket_aggs = target.get("bucketAggs") or []
    if not bucket_aggs:
        body["aggs"] = leaf
        return body
    # Grafana nests each bucket aggregation inside the previous one; metrics go innermost.
    outer: Json = {}
    current = outer
    for i, agg in enumerate(bucket_aggs):
        node = _bucket_agg(agg, time_field, time_from, time_to, interval)
        current[agg["id"]] = node
        if i == len(bucket_aggs) - 1:
            if leaf:
                node["aggs"] = leaf
        else:
            node["aggs"] = {}
            current = node["aggs"]
    body["aggs"] = outer
    return body


def es_variable_body(
    query: str, time_from: int, time_to: int, time_field: str = "@timestamp"
) -> Json:
    """Search body for an Elasticsearch variable query ``{"find": "terms", "field": ...}``."""
    spec = json.loads(query)
    if spec.get("find") != "terms":
        raise DashboardError(f"unsupported Elasticsearch variable query {query!r}")
    filters: list[Json] = [
        {"range": {time_field: {"gte": time_from, "lte": time_to, "format": "epoch_millis"}}}
    ]
    if spec.get("query"):
        filters.append({"query_string": {"analyze_wildcard": True, "query": spec["query"]}})
    return {
        "size": 0,
        "query": {"bool": {"filter": filters}},
        "aggs": {
            "1": {
                "terms": {
                    "field": spec["field"],
                    "size": int(spec.get("size", 500)),
                    "order": {"_key": "asc"},
                }
            }
        },
    }


def _has_values(node: Any) -> bool:
    """True if an aggregation tree holds a bucket with documents or a metric value."""
    if isinstance(node, dict):
        if "buckets" in node:
            buckets = node["buckets"]
            items = buckets.values() if isinstance(buckets, dict) else buckets
            return any(_bucket_has_values(b) for b in items)
        if "value" in node:
            return node["value"] is not None
        if "values" in node:
            vals = node["values"]
            items = vals.values() if isinstance(vals, dict) else [v.get("value") for v in vals]
            return any(v is not None for v in items)
        if "top" in node:
            return bool(node["top"])
    return False


def _bucket_has_values(bucket: Json) -> bool:
    if bucket.get("doc_count", 0) <= 0:
        return False
    subs = [v for k, v in bucket.items() if isinstance(v, dict) and k not in ("key",)]
    # A bucket with only doc_count (count metric) has data; otherwise every sub-aggregation must.
    return not subs or all(_has_values(s) for s in subs)


def es_response_has_data(body: Json, response: Json) -> bool:
    """Whether a panel would show something: hits for raw searches, filled buckets otherwise."""
    if body.get("size", 0) > 0:
        return bool(response.get("hits", {}).get("hits"))
    aggs = response.get("aggregations") or {}
    if not aggs:
        return bool(response.get("hits", {}).get("total", {}).get("value"))
    return all(_has_values(v) for v in aggs.values())

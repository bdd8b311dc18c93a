"""Building blocks shared by the dashboards: datasources, selectors, panels, variables, links.

Everything returns grafana-foundation-sdk builders; :class:`Board` places panels on the
24-column grid and numbers them. A new panel is one call in a dashboard module, e.g.::

    board.add(timeseries("Unfinished/s", prom(rate("faas_unfinished_total"), "{{function}}")))

Anything these helpers do not cover is set on the builder they return (its methods are
Grafana's own options, typed), before ``board.add``.

Datasource uids are fixed by ``grafana/provisioning/datasources/faaslens.yml``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import common, dashboard, prometheus
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.builders import timeseries as timeseries_panel
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import elasticsearch as em

PROM = dm.DataSourceRef(type_val="prometheus", uid="faaslens-prom")
ES_INV = dm.DataSourceRef(type_val="elasticsearch", uid="faaslens-es-invocations")
ES_LOGS = dm.DataSourceRef(type_val="elasticsearch", uid="faaslens-es-logs")
ES_ERR = dm.DataSourceRef(type_val="elasticsearch", uid="faaslens-es-errors")

UID_OVERVIEW = "faaslens-overview"
UID_INVOCATIONS = "faaslens-invocations"
UID_ERRORS = "faaslens-errors"
UID_WORKER = "faaslens-worker"

#: Every aggregate panel filters on the same bounded labels (the Overview's variables).
SEL = 'function=~"$function", environment=~"$environment", provider=~"$provider", region=~"$region"'
RI = "$__rate_interval"
GRID_COLUMNS = 24

#: A data link from any cell holding an invocation id to the Invocations dashboard.
INVOCATION_LINK = {
    "title": "Open invocation ${__value.raw}",
    "url": f"/d/{UID_INVOCATIONS}/faaslens-invocations?var-invocation_id=${{__value.raw}}"
    "&${__url_time_range}",
}

Query = prometheus.Dataquery | es.Dataquery
Panel = timeseries_panel.Panel | table_panel.Panel | stat_panel.Panel
Override = tuple[str, list[dm.DynamicConfigValue]]


# --------------------------------------------------------------------------- the board


class Board:
    """A dashboard under construction: common settings, grid placement and panel ids.

    Panels are placed left to right in the order added and wrap to a new row when the
    next one would cross column 24. (The SDK's own placement wraps only after a panel
    has crossed it, which leaves a 24-wide panel after a 6-wide one at x=6.)
    """

    def __init__(
        self, uid: str, title: str, *, refresh: str = "30s", time_from: str = "now-6h"
    ) -> None:
        self.builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .tags(["faaslens"])
            .timezone("browser")
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .refresh(refresh)
            .time(time_from, "now")
            .version(1)
            .link(
                dashboard.DashboardLink("faaslens")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["faaslens"])
                .as_dropdown(True)
                .include_vars(False)
                .keep_time(True)
            )
        )
        self._x = 0
        self._y = 0
        self._row_h = 0
        self._next_id = 1

    def variables(self, *variables: Builder[dm.VariableModel]) -> Board:
        """Add template variables, in the order shown above the panels."""
        for variable in variables:
            self.builder.with_variable(variable)
        return self

    def add(self, *panels: Panel) -> Board:
        """Place each panel (its width and height are already set) and give it the next id."""
        for panel in panels:
            pos = panel.build().grid_pos
            assert pos is not None, "panel helpers set the size"
            if self._x + pos.w > GRID_COLUMNS:
                self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
            pos.x, pos.y = self._x, self._y
            self._x += pos.w
            self._row_h = max(self._row_h, pos.h)
            self.builder.with_panel(panel.id(self._next_id))
            self._next_id += 1
        return self

    def to_json(self) -> str:
        """The dashboard as provisioned: indented JSON ending in a newline."""
        return json.dumps(self.builder.build(), cls=JSONEncoder, indent=2) + "\n"


# --------------------------------------------------------------------------- queries


def rate(metric: str, by: str = "function", selector: str = SEL, window: str = RI) -> str:
    """Per second: ``sum by (<by>) (rate(<metric>{<selector>}[<window>]))``; one series
    summed over everything when ``by`` is empty."""
    return _summed("rate", metric, by, selector, window)


def increase(metric: str, window: str, by: str = "function", selector: str = SEL) -> str:
    """Growth over ``window`` (counter resets handled): like :func:`rate`."""
    return _summed("increase", metric, by, selector, window)


def _summed(func: str, metric: str, by: str, selector: str, window: str) -> str:
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}({func}({metric}{{{selector}}}[{window}]))"


def quantile(q: str, metric: str, by: str = "le, function", selector: str = SEL) -> str:
    """``histogram_quantile(q, ...)`` over the ``_bucket`` series of ``metric``."""
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{selector}}}[{RI}])))"


def prom(
    expr: str, legend: str, *, exemplar: bool = False, instant: bool = False
) -> prometheus.Dataquery:
    """A PromQL query on the faaslens Prometheus (range unless ``instant``)."""
    query = (
        prometheus.Dataquery().datasource(PROM).expr(expr).legend_format(legend).exemplar(exemplar)
    )
    return query.instant() if instant else query.range()


def quantiles(
    metric: str,
    qs: Sequence[str],
    *,
    by: str = "le, function",
    selector: str = SEL,
    legend: str = " {{function}}",
    exemplar: bool = False,
) -> list[prometheus.Dataquery]:
    """One :func:`quantile` query per ``qs`` (``"0.5"``, ...), legends ``p50<legend>``, ..."""
    return [
        prom(
            quantile(q, metric, by=by, selector=selector),
            f"p{q[2:].ljust(2, '0')}{legend}",
            exemplar=exemplar,
        )
        for q in qs
    ]


def es_query(
    ds: dm.DataSourceRef,
    lucene: str,
    metrics: Sequence[Builder[em.MetricAggregation]],
    bucket_aggs: Sequence[Builder[em.BucketAggregation]] = (),
) -> es.Dataquery:
    """An Elasticsearch query (Lucene filter, metrics, nested bucket aggregations)."""
    return (
        es.Dataquery()
        .datasource(ds)
        .query(lucene)
        .alias("")
        .metrics(list(metrics))
        .bucket_aggs(list(bucket_aggs))
        .time_field("@timestamp")
    )


def count(agg_id: str = "1") -> es.Count:
    return es.Count().id(agg_id)


def raw_data(size: int = 500) -> list[Builder[em.MetricAggregation]]:
    """Documents themselves, newest first, ``size`` at most."""
    return [es.RawData().id("1").settings(es.ElasticsearchRawDataSettings().size(str(size)))]


def date_histogram(agg_id: str = "2") -> es.DateHistogram:
    """Buckets on ``@timestamp`` at Grafana's automatic interval, empty ones kept."""
    settings = (
        es.ElasticsearchDateHistogramSettings().interval("auto").min_doc_count("0").trim_edges("0")
    )
    return es.DateHistogram().id(agg_id).field("@timestamp").settings(settings)


def by_term_over_time(
    ds: dm.DataSourceRef,
    lucene: str,
    field: str,
    size: int,
    metrics: Sequence[Builder[em.MetricAggregation]] = (),
) -> es.Dataquery:
    """``metrics`` (default: the document count) per time bucket for each of the ``size``
    most frequent values of ``field``: one series per value."""
    return es_query(
        ds, lucene, metrics or [count()], [terms("3", field, size), date_histogram("2")]
    )


def terms(agg_id: str, field: str, size: int, order_by: str = "_count") -> es.Terms:
    """The ``size`` top values of ``field``, by document count or by metric ``order_by``."""
    settings = (
        es.ElasticsearchTermsSettings()
        .order(em.TermsOrder.DESC)
        .order_by(order_by)
        .size(str(size))
        .min_doc_count("1")
    )
    return es.Terms().id(agg_id).field(field).settings(settings)


# --------------------------------------------------------------------------- panels


PanelT = TypeVar("PanelT", timeseries_panel.Panel, table_panel.Panel, stat_panel.Panel)


def _panel(
    panel: PanelT,
    title: str,
    queries: Query | Sequence[Query],
    *,
    unit: str,
    w: int,
    h: int,
    description: str,
) -> PanelT:
    """What every panel has: title, queries (refIds A, B, ...; the panel's datasource is the
    first query's), unit of its values, size in grid units, and a description if any."""
    if not isinstance(queries, Sequence):
        queries = [queries]
    ds = queries[0].build().datasource
    assert ds is not None, "queries name their datasource"
    targets: list[Builder[Dataquery]] = [q.ref_id(chr(ord("A") + i)) for i, q in enumerate(queries)]
    panel.title(title).datasource(ds).targets(targets).unit(unit).span(w).height(h)
    if description:
        panel.description(description)
    return panel


def timeseries(
    title: str,
    queries: Query | Sequence[Query],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    description: str = "",
    repeat: str | None = None,
) -> timeseries_panel.Panel:
    """A time series panel of one query or several; ``repeat`` names a variable to repeat it
    over (two per row)."""
    panel = _panel(
        timeseries_panel.Panel(), title, queries, unit=unit, w=w, h=h, description=description
    ).legend(
        common.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.LIST)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
    )
    if repeat:
        panel.repeat(repeat).repeat_direction("h").max_per_row(2)
    return panel


def table(
    title: str,
    queries: Query | Sequence[Query],
    *,
    w: int = 24,
    h: int = 9,
    unit: str = "short",
    overrides: Sequence[Override] = (),
    transformations: Sequence[dm.DataTransformerConfig] = (),
    description: str = "",
) -> table_panel.Panel:
    """A table; ``overrides`` apply per column name (after ``transformations``)."""
    panel = (
        _panel(table_panel.Panel(), title, queries, unit=unit, w=w, h=h, description=description)
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .transformations(list(transformations))
    )
    for name, properties in overrides:
        panel.override_by_name(name, properties)
    return panel


def documents(
    title: str,
    ds: dm.DataSourceRef,
    lucene: str,
    size: int,
    *,
    columns: str = "",
    rename: dict[str, str] | None = None,
    h: int = 10,
    overrides: Sequence[Override] = (),
    first: Sequence[dm.DataTransformerConfig] = (),
    description: str = "",
) -> table_panel.Panel:
    """A full-width table of the newest ``size`` documents matching ``lucene``.

    ``columns`` (field names separated by spaces) picks and orders the columns, renamed by
    ``rename``; without it every field is shown. ``first`` transformations run before that.
    """
    transformations = [*first, organize(columns, rename)] if columns else list(first)
    return table(
        title,
        es_query(ds, lucene, raw_data(size)),
        h=h,
        overrides=overrides,
        transformations=transformations,
        description=description,
    )


def stat(title: str, query: Query, *, unit: str, w: int = 6, h: int = 4) -> stat_panel.Panel:
    """One big number: the last non-null value, with a sparkline."""
    return (
        _panel(stat_panel.Panel(), title, query, unit=unit, w=w, h=h, description="")
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.AREA)
    )


# --------------------------------------------------------------------------- field overrides


def unit_override(field: str, unit: str) -> Override:
    return field, [dm.DynamicConfigValue(id_val="unit", value=unit)]


def link_override(field: str, link: dict[str, str]) -> Override:
    # A field data link ({title, url}): the SDK types dashboard links, not data links.
    return field, [dm.DynamicConfigValue(id_val="links", value=[link])]


def wrap_override(field: str) -> Override:
    """Long text (stack traces): wrapped in the cell, full value in the inspect drawer."""
    return field, [
        dm.DynamicConfigValue(
            id_val="custom.cellOptions", value=cm.TableAutoCellOptions(wrap_text=True)
        ),
        dm.DynamicConfigValue(id_val="custom.inspect", value=True),
    ]


# --------------------------------------------------------------------------- transformations


def organize(columns: str, rename: dict[str, str] | None = None) -> dm.DataTransformerConfig:
    """Show only ``columns`` (field names separated by spaces), in that order, renamed by
    ``rename``."""
    names = columns.split()
    return dm.DataTransformerConfig(
        id_val="organize",
        options={
            "indexByName": {c: i for i, c in enumerate(names)},
            "renameByName": rename or {},
            "includeByName": dict.fromkeys(names, True),
        },
    )


def transformation(kind: str, options: dict[str, object]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=kind, options=options)


# --------------------------------------------------------------------------- variables

_ALL = dm.VariableOption(selected=True, text=["All"], value=["$__all"])


def _query_var(
    name: str, label: str, ds: dm.DataSourceRef, query: str | dict[str, object], all_value: str
) -> dashboard.QueryVariable:
    """Multi-value, with All selected first (inserted as ``all_value``), sorted A-Z, values
    queried again when the time range changes."""
    return (
        dashboard.QueryVariable(name)
        .label(label or name)
        .datasource(ds)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .multi(True)
        .all_value(all_value)
        .current(_ALL)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .regex("")
    )


def prom_var(
    name: str, query: str, *, label: str = "", hidden: bool = False
) -> dashboard.QueryVariable:
    """A variable from a Prometheus ``label_values()`` / ``metrics()`` query (All = ``.*``)."""
    variable = _query_var(name, label, PROM, {"query": query, "refId": f"var-{name}"}, ".*")
    return variable.hide(dm.VariableHide.HIDE_VARIABLE) if hidden else variable


def es_terms_var(
    name: str, ds: dm.DataSourceRef, field: str, *, label: str = ""
) -> dashboard.QueryVariable:
    """A variable over the values of ``field`` in Elasticsearch. All = ``*``: a custom all
    value is inserted unformatted, and in Lucene ``*`` matches any value."""
    query = json.dumps({"find": "terms", "field": field, "size": 500})
    return _query_var(name, label, ds, query, "*")


def custom_var(name: str, values: Sequence[str], *, label: str = "") -> dashboard.CustomVariable:
    """A multi-value variable over fixed ``values`` (All = ``*`` for Lucene)."""
    return (
        dashboard.CustomVariable(name)
        .label(label or name)
        .values(",".join(values))
        .include_all(True)
        .multi(True)
        .all_value("*")
        .current(_ALL)
    )


def textbox(name: str, default: str, *, label: str = "") -> dashboard.TextBoxVariable:
    """Free text, ``default`` until the user types."""
    return (
        dashboard.TextBoxVariable(name)
        .label(label or name)
        .default_value(default)
        .current(dm.VariableOption(text=default, value=default))
    )


def adhoc(name: str, ds: dm.DataSourceRef) -> dashboard.AdHocVariable:
    """Filters on any field, added by Grafana to every query on ``ds``."""
    return dashboard.AdHocVariable(name).label(name).datasource(ds)

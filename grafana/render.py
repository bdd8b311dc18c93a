"""Plot panels of the Overview and Errors dashboards from their real queries on demo traffic.

    python -m grafana.render --minutes 4 [--rate 150] [--out docs/images]

(``python grafana/render.py`` works as well.)

Needs the local Elasticsearch and Prometheus (``scripts/stack up all``). The
script starts an ingest worker in this process (ephemeral ports, an index
prefix of its own), adds it to the Prometheus file_sd targets, sends
``--minutes`` of demo traffic through the real shipper and waits until every
document is indexed and the final counters are scraped. Then it does what
Grafana would for a handful of panels: template variables at "All",
``$__interval`` and ``$__rate_interval`` derived from the provisioned
datasource, PromQL through the query_range API, Elasticsearch search bodies
built by :mod:`grafana.emulate`. What comes back is plotted with
matplotlib into ``docs/images/overview.png`` and ``docs/images/errors.png``.
The time range shown starts one ``$__rate_interval`` into the traffic (so
every rate window is full) and ends on an ``$__interval`` boundary. The
worker's target file and its indices are removed at the end.

These are plots of the panels' data, not Grafana screenshots: layout, colors
and legends are approximations.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import secrets
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, MultipleLocator, NullFormatter

if not __package__:  # run as a file: the grafana and devkit packages are at the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grafana.emulate import (
    Json,
    PanelTarget,
    Variables,
    all_values,
    es_search_body,
    iter_targets,
    load_dashboards,
)

if TYPE_CHECKING:
    from devkit.services import Prometheus
    from faaslens.ingest.runner import Worker

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
DATASOURCES_FILE = REPO / "grafana" / "provisioning" / "datasources" / "faaslens.yml"
STACK_DIR = Path(os.environ.get("FAASLENS_STACK_DIR") or REPO / ".stack")

# The panels plotted, row by row, by their titles in the dashboard JSON. A row keeps the
# panels' own widths when they fill the 24-column grid, else splits it evenly.
OVERVIEW_ROWS: tuple[tuple[str, ...], ...] = (
    ("Invocations/s", "Error ratio", "p95 duration", "Estimated cost, last 24h"),
    ("Invocations/s by function", "Error % by function"),
    ("Duration p50 / p95 / p99",),
    ("Cold-start ratio", "Estimated cost per function, USD/day (at the current rate)"),
)
ERRORS_ROWS: tuple[tuple[str, ...], ...] = (
    ("Errors over time by type",),
    ("Top fingerprints",),
    ("Error search",),
)
# Panels whose values span decades are drawn on a log axis (and say so).
LOG_SCALE = {"Duration p50 / p95 / p99"}
# Panels given more height than in the dashboard (grid units), for their many lines.
TALLER = {"Duration p50 / p95 / p99": 11}
# Grafana's default panel width in pixels decides $__interval together with the time range.
MAX_DATA_POINTS = 1000

# A dark theme close to Grafana's.
BG = "#111217"
PANEL_BG = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e99"
STAT_GREEN = "#73bf69"
PALETTE = (
    "#73bf69",
    "#f2cc0c",
    "#5794f2",
    "#ff780a",
    "#f2495c",
    "#b877d9",
    "#8ab8ff",
    "#fade2a",
    "#37872d",
    "#705da0",
)
LINE_STYLES: tuple[Literal["-", "--", ":", "-."], ...] = ("-", "--", ":", "-.")

_LEGEND_RE = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# The intervals Grafana rounds $__interval to.
_NICE_INTERVALS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200)


# --------------------------------------------------------------------------- time range


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration such as ``15s`` or ``1m``."""
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def format_duration(seconds: float) -> str:
    """``60`` -> ``1m``, ``15`` -> ``15s``: the largest whole unit."""
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNIT_S[unit] and seconds % _UNIT_S[unit] == 0:
            return f"{int(seconds // _UNIT_S[unit])}{unit}"
    return f"{int(seconds * 1000)}ms"


@dataclass(frozen=True, slots=True)
class Window:
    """A dashboard time range and the intervals Grafana derives from it."""

    start: float
    end: float
    interval_s: float
    rate_interval_s: float

    @classmethod
    def for_range(cls, start: float, end: float, scrape_s: float) -> Window:
        """``$__interval``: range / max data points, at least the scrape interval, rounded
        up to a nice value; ``$__rate_interval``: max(interval + scrape, 4 x scrape)."""
        raw = max(scrape_s, (end - start) / MAX_DATA_POINTS)
        interval = next((float(n) for n in _NICE_INTERVALS_S if n >= raw), raw)
        return cls(start, end, interval, max(interval + scrape_s, 4 * scrape_s))

    @classmethod
    def of_traffic(cls, start: float, end: float, scrape_s: float) -> Window:
        """The range to show for traffic sent from ``start`` to ``end``: it begins one
        ``$__rate_interval`` in (every rate window full) and both ends fall on
        ``$__interval`` boundaries, so no histogram bucket or step is cut short."""
        first = cls.for_range(start, end, scrape_s)
        step = first.interval_s
        begin = math.ceil((start + first.rate_interval_s) / step) * step
        stop = math.floor(end / step) * step - 0.001  # the last bucket ends at ``stop``
        if stop - begin < 4 * step:
            raise ValueError("too little traffic for a picture: raise --minutes")
        return cls.for_range(begin, stop, scrape_s)

    def builtins(self) -> dict[str, str]:
        span = int(self.end - self.start)
        return {
            "__interval": format_duration(self.interval_s),
            "__interval_ms": str(int(self.interval_s * 1000)),
            "__rate_interval": format_duration(self.rate_interval_s),
            "__range": f"{span}s",
            "__range_s": str(span),
            "__from": str(int(self.start * 1000)),
            "__to": str(int(self.end * 1000)),
        }

    def prom_range(self) -> tuple[float, float, float]:
        """Start, end and step of a range query, aligned to the step as Grafana does."""
        step = self.interval_s
        return math.floor(self.start / step) * step, math.floor(self.end / step) * step, step


# --------------------------------------------------------------------------- panel data


@dataclass(slots=True)
class Series:
    """One line of a time series panel."""

    name: str
    times: list[float]  # epoch seconds
    values: list[float]
    labels: dict[str, str] = field(default_factory=dict)
    target: int = 0  # index of the panel target that returned it
    style_name: str = ""  # the target's legend with the label placeholders removed


@dataclass(slots=True)
class TableData:
    """Columns and rows of a table panel, after its transformations."""

    columns: list[str]
    rows: list[list[Any]]


@dataclass(slots=True)
class Panel:
    """A dashboard panel with the data its queries returned."""

    spec: Json
    series: list[Series] = field(default_factory=list)
    table: TableData | None = None

    @property
    def title(self) -> str:
        return str(self.spec.get("title", ""))

    @property
    def kind(self) -> str:
        return str(self.spec.get("type", "timeseries"))

    @property
    def unit(self) -> str:
        return str(self.spec.get("fieldConfig", {}).get("defaults", {}).get("unit", "short"))


def _legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt:
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        return f"{labels.get('__name__', '')}{{{inner}}}"
    return _LEGEND_RE.sub(lambda m: labels.get(m.group(1), ""), fmt).strip()


def _number(text: str) -> float:
    return float(text)  # "NaN" and "+Inf" included: gaps in the plot


def prom_series(
    prom: Prometheus, index: int, t: PanelTarget, variables: Variables, window: Window
) -> list[Series]:
    """Run one Prometheus target over the window (instant targets at its end)."""
    expr = variables.interpolate(t.target["expr"], "prometheus")
    if "$" in expr:
        raise ValueError(f"{t.label}: unsubstituted variable in {expr}")
    fmt = str(t.target.get("legendFormat", ""))
    style_name = _LEGEND_RE.sub("", fmt).strip()
    out: list[Series] = []
    if t.target.get("instant"):
        for row in prom.query(expr, at=window.end):
            ts, value = row["value"]
            labels = dict(row["metric"])
            out.append(
                Series(_legend(fmt, labels), [ts], [_number(value)], labels, index, style_name)
            )
        return out
    for row in prom.query_range(expr, *window.prom_range()):
        labels = dict(row["metric"])
        times = [float(p[0]) for p in row["values"]]
        values = [_number(p[1]) for p in row["values"]]
        out.append(Series(_legend(fmt, labels), times, values, labels, index, style_name))
    return out


def _metric_column(metric: Json) -> str:
    """Grafana's column name for an Elasticsearch metric, e.g. ``Max @timestamp``."""
    if metric["type"] == "count":
        return "Count"
    return f"{str(metric['type']).capitalize()} {metric.get('field', '')}".strip()


def _metric_value(metric: Json, bucket: Json) -> Any:
    if metric["type"] == "count":
        return bucket.get("doc_count")
    node = bucket.get(str(metric["id"]), {})
    return node.get("value")


def _walk_buckets(
    node: Json, aggs: list[Json], path: list[tuple[str, Any]]
) -> Iterator[tuple[list[tuple[str, Any]], Json]]:
    """Every leaf bucket of nested bucket aggregations, with the (field, key) path to it."""
    if not aggs:
        yield path, node
        return
    agg, rest = aggs[0], aggs[1:]
    buckets = node.get(str(agg["id"]), {}).get("buckets", [])
    for bucket in buckets:
        yield from _walk_buckets(bucket, rest, [*path, (str(agg.get("field", "")), bucket["key"])])


def es_series(t: PanelTarget, index: int, response: Json) -> list[Series]:
    """Time series from terms ... date_histogram aggregations: one per terms path and metric."""
    aggs = list(t.target.get("bucketAggs") or [])
    if not aggs or aggs[-1]["type"] != "date_histogram":
        raise ValueError(f"{t.label}: a time series needs a date_histogram innermost")
    metrics = list(t.target.get("metrics") or [{"id": "1", "type": "count"}])
    lines: dict[str, Series] = {}
    root = response.get("aggregations", {})
    for path, bucket in _walk_buckets(root, aggs, []):
        terms = [str(key) for _, key in path[:-1]]
        when = float(path[-1][1]) / 1000.0
        for metric in metrics:
            parts = (
                terms if metric["type"] == "count" and terms else [*terms, _metric_column(metric)]
            )
            name = " ".join(parts)
            labels = {f: str(k) for f, k in path[:-1]}
            line = lines.setdefault(name, Series(name, [], [], labels, index))
            value = _metric_value(metric, bucket)
            line.times.append(when)
            line.values.append(float("nan") if value is None else float(value))
    return list(lines.values())


def es_frame(t: PanelTarget, response: Json) -> TableData:
    """The table Grafana makes of one Elasticsearch response (raw documents or buckets)."""
    metrics = list(t.target.get("metrics") or [{"id": "1", "type": "count"}])
    if metrics[0]["type"] in ("raw_data", "raw_document"):
        docs = [hit["_source"] for hit in response.get("hits", {}).get("hits", [])]
        columns: list[str] = []
        for doc in docs:
            columns += [k for k in doc if k not in columns]
        return TableData(columns, [[doc.get(c) for c in columns] for doc in docs])
    aggs = list(t.target.get("bucketAggs") or [])
    columns = [str(a.get("field", "")) for a in aggs] + [_metric_column(m) for m in metrics]
    rows = []
    for path, bucket in _walk_buckets(response.get("aggregations", {}), aggs, []):
        rows.append([key for _, key in path] + [_metric_value(m, bucket) for m in metrics])
    return TableData(columns, rows)


def join_by_field(frames: list[TableData], by: str) -> TableData:
    """Grafana's outer ``joinByField``; a column name already taken keeps its first frame's."""
    columns = [by]
    for frame in frames:
        columns += [c for c in frame.columns if c not in columns]
    joined: dict[Any, dict[str, Any]] = {}
    for frame in frames:
        if by not in frame.columns:
            continue
        key_at = frame.columns.index(by)
        for row in frame.rows:
            merged = joined.setdefault(row[key_at], {})
            for column, value in zip(frame.columns, row, strict=True):
                merged.setdefault(column, value)
    return TableData(columns, [[r.get(c) for c in columns] for r in joined.values()])


def organize(table: TableData, options: Json) -> TableData:
    """Grafana's ``organize`` transformation: include / exclude, order, rename."""
    include = options.get("includeByName") or {}
    exclude = options.get("excludeByName") or {}
    order = options.get("indexByName") or {}
    rename = options.get("renameByName") or {}
    kept = [
        i
        for i, c in enumerate(table.columns)
        if (not include or include.get(c)) and not exclude.get(c)
    ]
    kept.sort(key=lambda i: order.get(table.columns[i], len(order) + i))
    return TableData(
        [rename.get(table.columns[i]) or table.columns[i] for i in kept],
        [[row[i] for i in kept] for row in table.rows],
    )


def transform(panel: Json, frames: list[TableData]) -> TableData:
    """Apply a table panel's transformations to its targets' frames."""
    table: TableData | None = None
    for step in panel.get("transformations", []):
        if step["id"] == "joinByField":
            table = join_by_field(frames, step["options"]["byField"])
        elif step["id"] == "organize":
            table = organize(table or frames[0], step["options"])
    return table or frames[0]


# --------------------------------------------------------------------------- the live stack


def _metric_sum(text: str, name: str) -> float:
    """Sum of every sample of ``name`` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass(slots=True)
class Live:
    """The fed stack that the panels are queried on."""

    es_url: str
    prefix: str
    prometheus: Prometheus
    instance: str
    window: Window
    datasources: dict[str, Json]
    invocations: int

    def es_search(self, uid: str, body: Json) -> Json:
        from devkit.services import es_request

        pattern = str(self.datasources[uid]["jsonData"]["index"])
        if not pattern.startswith("faaslens-"):
            raise ValueError(f"datasource {uid}: unexpected index pattern {pattern}")
        index = urllib.parse.quote(self.prefix + pattern[len("faaslens") :])
        result: Json = es_request(self.es_url, "POST", f"/{index}/_search", body)
        return result


def _feed(
    *,
    args: argparse.Namespace,
    worker: Worker,
    prom: Prometheus,
    es_url: str,
    prefix: str,
    datasources: dict[str, Json],
) -> Live:
    """Register the worker with Prometheus, run the demo, wait for indexing and the scrape."""
    from devkit.services import es_request, http_json
    from devkit.wait import poll_until
    from faaslens.demo import run_demo

    assert worker.udp_address is not None and worker.http_address is not None
    instance = f"127.0.0.1:{worker.http_address[1]}"
    prom.add_target(instance)
    print(f"render: worker {instance} registered, waiting for its first scrape", file=sys.stderr)
    prom.wait_for_target_up(instance, timeout=60)
    host, port = worker.udp_address
    seconds = args.minutes * 60
    print(f"render: {seconds:.0f}s of demo traffic at {args.rate:g}/s", file=sys.stderr)
    start = time.time()
    stats = run_demo(
        f"udp://{host}:{port}", rate=args.rate, duration=seconds, seed=args.seed, progress=True
    )
    end = time.time()
    print(
        f"render: sent {stats.invocations} invocations ({stats.errors} errors, "
        f"{stats.cold_starts} cold starts)",
        file=sys.stderr,
    )

    def indexed() -> bool:
        _, text = http_json("GET", f"http://{instance}/metrics")
        built = _metric_sum(text, "faaslens_docs_built_total")
        done = _metric_sum(text, "faaslens_docs_indexed_total")
        queued = _metric_sum(text, "faaslens_queue_depth")
        return built > 0 and built == done and queued == 0

    poll_until(indexed, timeout=180, interval=0.5, what="every document indexed")
    es_request(es_url, "POST", f"/{prefix}-*/_refresh")
    count = int(es_request(es_url, "GET", f"/{prefix}-invocations-*/_count")["count"])

    def scraped() -> bool:
        rows = prom.query(f'sum(faas_invocations_total{{instance="{instance}"}})')
        return bool(rows) and float(rows[0]["value"][1]) == count

    poll_until(scraped, timeout=60, interval=0.5, what="the final counters scraped")
    scrape_s = parse_duration(datasources["faaslens-prom"]["jsonData"].get("timeInterval", "15s"))
    window = Window.of_traffic(start, end, scrape_s)
    return Live(es_url, prefix, prom, instance, window, datasources, count)


def _other_instances(live: Live) -> list[str]:
    """Workers other than ours whose invocations the "All" selections also count."""
    start, end, _ = live.window.prom_range()
    rows = live.prometheus.query(
        f"count by (instance) (count_over_time(faas_invocations_total[{int(end - start) + 1}s]))",
        at=end,
    )
    return sorted(
        r["metric"].get("instance", "")
        for r in rows
        if r["metric"].get("instance") != live.instance
    )


def collect(live: Live, dashboard: Json, rows: Sequence[Sequence[str]]) -> dict[str, Panel]:
    """Run the targets of the chosen panels with every variable at "All"."""
    wanted = {title for row in rows for title in row}
    panels = {p["title"]: Panel(p) for p in _all_panels(dashboard) if p.get("title") in wanted}
    missing = wanted - set(panels)
    if missing:
        raise SystemExit(f"{dashboard['title']}: no panel titled {sorted(missing)}")
    values: dict[str, Sequence[str] | None] = {}
    for var in dashboard.get("templating", {}).get("list", []):
        # Text boxes keep their default (the errors search is "*"); the rest are "All".
        values[var["name"]] = [str(var["query"])] if var["type"] == "textbox" else None
    variables = Variables(
        values=values, all_values=all_values(dashboard), builtins=live.window.builtins()
    )
    frames: dict[str, list[TableData]] = {}
    counters: dict[str, int] = {}
    for t in iter_targets(dashboard):
        panel = panels.get(t.panel)
        if panel is None:
            continue
        index = counters[t.panel] = counters.get(t.panel, -1) + 1
        if t.datasource_type == "prometheus":
            panel.series += prom_series(live.prometheus, index, t, variables, live.window)
            continue
        query = variables.interpolate(t.target.get("query", ""), "elasticsearch")
        if "$" in query:
            raise ValueError(f"{t.label}: unsubstituted variable in {query}")
        body = es_search_body(
            t.target,
            query,
            int(live.window.start * 1000),
            int(live.window.end * 1000),
            interval=format_duration(live.window.interval_s),
        )
        response = live.es_search(t.datasource_uid, body)
        if panel.kind == "table":
            frames.setdefault(t.panel, []).append(es_frame(t, response))
        else:
            panel.series += es_series(t, index, response)
    for title, panel_frames in frames.items():
        panels[title].table = transform(panels[title].spec, panel_frames)
    for panel in panels.values():
        if not panel.series and (panel.table is None or not panel.table.rows):
            print(f"render: {dashboard['title']} / {panel.title}: no data", file=sys.stderr)
    return panels


def _all_panels(dashboard: Json) -> Iterator[Json]:
    stack = list(reversed(dashboard.get("panels", [])))
    while stack:
        panel = stack.pop()
        yield panel
        stack += reversed(panel.get("panels", []))


# --------------------------------------------------------------------------- plotting

# The figure is laid out in pixels (at DPI), like a dashboard: a header, then rows of
# panels on a 24-column grid, one grid unit of height being UNIT_PX.
DPI = 100
FIG_W = 1600
UNIT_PX = 34
GAP = 8
HEADER = 54
ROW_PX = 24  # a table row
CHAR_PX = 5.4  # a character at font size 8, for legend and column widths


def _si(value: float, suffix: str = "") -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{suffix}".rstrip()
    return f"{value:.3g} {suffix}".rstrip()


def format_value(value: float, unit: str) -> str:
    """A value with its Grafana unit, e.g. ``reqps`` -> ``12.5 req/s``."""
    if math.isnan(value):
        return "-"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "reqps":
        return _si(value, "req/s")
    if unit == "s":
        if value == 0:
            return "0 s"
        if abs(value) < 1:
            return f"{value * 1000:.3g} ms"
        return f"{value:.3g} s"
    if unit == "currencyUSD":
        return f"${value:,.2f}" if abs(value) >= 10 else f"${value:.3g}"
    if unit == "bytes":
        for factor, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= factor:
                return f"{value / factor:.3g} {name}"
        return f"{value:.0f} B"
    return _si(value)


def _clock(epoch_s: float, _pos: int | None = None) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%H:%M:%S")


@dataclass(frozen=True, slots=True)
class Canvas:
    """Pixel rectangles (origin top left) to figure fractions."""

    fig: Figure
    height: int

    def rect(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        return x / FIG_W, 1 - (y + h) / self.height, w / FIG_W, h / self.height

    def point(self, x: float, y: float) -> tuple[float, float]:
        return x / FIG_W, 1 - y / self.height

    def axes(self, x: float, y: float, w: float, h: float) -> Axes:
        ax = self.fig.add_axes(self.rect(x, y, w, h))
        ax.set_facecolor("none")
        for spine in ax.spines.values():
            spine.set_visible(False)
        return ax

    def text(self, x: float, y: float, text: str, **kwargs: Any) -> None:
        self.fig.text(*self.point(x, y), text, parse_math=False, **kwargs)


def _panel_frame(canvas: Canvas, box: tuple[int, int, int, int], title: str) -> None:
    x, y, w, h = box
    canvas.fig.add_artist(
        Rectangle(
            canvas.point(x, y + h),
            w / FIG_W,
            h / canvas.height,
            transform=canvas.fig.transFigure,
            facecolor=PANEL_BG,
            edgecolor=BORDER,
            linewidth=1,
            zorder=-1,  # under the axes
        )
    )
    canvas.text(x + 10, y + 16, title, color=TEXT, fontsize=10, fontweight="bold", va="center")


def _series_key(s: Series) -> str:
    return s.labels.get("function", s.name)


def draw_timeseries(
    canvas: Canvas,
    box: tuple[int, int, int, int],
    panel: Panel,
    window: Window,
    colors: dict[str, str],
) -> None:
    x, y, w, h = box
    series = sorted(panel.series, key=lambda s: (_series_key(s), s.target))
    styles = sorted({(s.target, s.style_name) for s in series})
    # Several queries per function (p50, p95, ...): one color per function, one dash per query.
    by_function = len(styles) > 1 and all("function" in s.labels for s in series)
    if by_function:
        functions = sorted({s.labels["function"] for s in series})
        handles = [Line2D([], [], color=colors[f], linewidth=2) for f in functions]
        handles += [
            Line2D([], [], color=TEXT, linestyle=LINE_STYLES[i % len(LINE_STYLES)], linewidth=1.4)
            for i, _ in styles
        ]
        labels = functions + [name for _, name in styles]
    else:
        handles = [
            Line2D([], [], color=colors.get(_series_key(s), TEXT), linewidth=2) for s in series
        ]
        labels = [s.name for s in series]
    longest = max((len(label) for label in labels), default=0)
    ncol = max(1, min(len(labels), int((w - 80) // (longest * CHAR_PX + 48))))
    legend_h = math.ceil(len(labels) / ncol) * 17 if labels else 0
    ax = canvas.axes(x + 74, y + 34, w - 92, h - 34 - 24 - legend_h - 10)
    ax.grid(True, color=BORDER, linewidth=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(colors=MUTED, labelsize=8, length=0)
    for s in series:
        ax.plot(
            s.times,
            s.values,
            color=colors.get(_series_key(s), TEXT),
            linestyle=LINE_STYLES[s.target % len(LINE_STYLES)] if by_function else "-",
            linewidth=1.4,
        )
    first, last, _ = window.prom_range()  # where the steps and the histogram buckets fall
    ax.set_xlim(first, last)
    span = window.end - window.start
    tick = next((t for t in (15, 30, 60, 120, 300, 600, 1800, 3600) if span / t <= 8), 3600)
    ax.xaxis.set_major_locator(MultipleLocator(tick))
    ax.xaxis.set_major_formatter(FuncFormatter(_clock))
    unit = panel.unit
    if panel.title in LOG_SCALE:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
        canvas.text(
            x + w - 12, y + 16, "log scale", color=MUTED, fontsize=8, ha="right", va="center"
        )
    else:
        ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_value(v, unit)))
    if not series:
        ax.text(0.5, 0.5, "No data", color=MUTED, ha="center", va="center", transform=ax.transAxes)
        return
    canvas.fig.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=canvas.point(x + 8, y + h - legend_h - 8),
        bbox_transform=canvas.fig.transFigure,
        ncol=ncol,
        frameon=False,
        fontsize=8,
        labelcolor=TEXT,
        handlelength=2.2,
        columnspacing=1.6,
        borderaxespad=0,
        borderpad=0,
        labelspacing=0.45,
    )


def draw_stat(canvas: Canvas, box: tuple[int, int, int, int], panel: Panel) -> None:
    x, y, w, h = box
    ax = canvas.axes(x + 1, y + 30, w - 2, h - 31)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    points = [
        (t, v)
        for s in panel.series[:1]
        for t, v in zip(s.times, s.values, strict=True)
        if not math.isnan(v)
    ]
    if not points:
        ax.text(0.5, 0.5, "No data", color=MUTED, ha="center", va="center", fontsize=14)
        return
    # The sparkline (graphMode "area") under the last non-null value (reduce "lastNotNull").
    first, last = points[0][0], points[-1][0]
    top = max(v for _, v in points) or 1.0
    xs = [(t - first) / ((last - first) or 1.0) for t, _ in points]
    ys = [0.7 * v / top for _, v in points]
    ax.fill_between(xs, ys, color=STAT_GREEN, alpha=0.16, linewidth=0)
    ax.plot(xs, ys, color=STAT_GREEN, linewidth=1.2, alpha=0.7)
    ax.text(
        0.5,
        0.55,
        format_value(points[-1][1], panel.unit),
        color=STAT_GREEN,
        ha="center",
        va="center",
        fontsize=26,
        fontweight="bold",
    )


def _cell(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column in ("first seen", "last seen", "@timestamp"):
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        return str(value).replace("T", " ")[:19]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


MONOSPACED = {"fingerprint", "example invocation", "faas.execution", "error.grouping_key"}


def draw_table(canvas: Canvas, box: tuple[int, int, int, int], panel: Panel) -> None:
    x, y, w, h = box
    table = panel.table
    if table is None or not table.rows:
        canvas.text(x + w / 2, y + h / 2, "No data", color=MUTED, ha="center", va="center")
        return
    rows = [[_cell(v, c) for v, c in zip(row, table.columns, strict=True)] for row in table.rows]
    fits = max(1, (h - 34 - ROW_PX - 10) // ROW_PX)
    shown = rows[: fits if len(rows) <= fits else fits - 1]
    # Column widths follow the longest text, capped so that one long message cannot take all.
    caps = [min(max(len(c), *(len(r[i]) for r in shown)), 64) for i, c in enumerate(table.columns)]
    scale = (w - 24) / sum(cap + 3 for cap in caps)
    top = y + 34
    canvas.fig.add_artist(
        Line2D(
            [x / FIG_W, (x + w) / FIG_W],
            [canvas.point(0, top + ROW_PX)[1]] * 2,
            color=BORDER,
            linewidth=1,
            transform=canvas.fig.transFigure,
        )
    )
    cx = x + 12.0
    for i, column in enumerate(table.columns):
        mid = top + ROW_PX / 2
        canvas.text(cx, mid, column, color=MUTED, fontsize=8, fontweight="bold", va="center")
        for r, row in enumerate(shown):
            text = row[i] if len(row[i]) <= caps[i] else row[i][: caps[i] - 1] + "…"
            family = "monospace" if column in MONOSPACED else "sans-serif"
            canvas.text(
                cx, mid + ROW_PX * (r + 1), text, color=TEXT, fontsize=8, va="center", family=family
            )
        cx += (caps[i] + 3) * scale
    if len(shown) < len(rows):
        canvas.text(
            x + 12,
            top + ROW_PX * (len(shown) + 1.5),
            f"… {len(rows) - len(shown)} more rows",
            color=MUTED,
            fontsize=8,
            va="center",
        )


def _panel_height(panel: Panel) -> int:
    """The panel's grid height in pixels; a table shrinks to its rows."""
    px = TALLER.get(panel.title, int(panel.spec["gridPos"]["h"])) * UNIT_PX
    if panel.kind == "table" and panel.table is not None:
        px = min(px, 34 + ROW_PX * (len(panel.table.rows) + 1) + 12)
    return px


def plot(
    *,
    path: Path,
    heading: str,
    subtitle: str,
    panels: dict[str, Panel],
    rows: Sequence[Sequence[str]],
    window: Window,
) -> None:
    """Lay the panels out on a 24-column grid and save the figure as PNG."""
    heights = [max(_panel_height(panels[t]) for t in row) for row in rows]
    height = HEADER + sum(heights) + GAP * len(rows)
    fig = Figure(figsize=(FIG_W / DPI, height / DPI), dpi=DPI, facecolor=BG)
    canvas = Canvas(fig, height)
    canvas.text(GAP + 2, 22, heading, color=TEXT, fontsize=15, fontweight="bold", va="center")
    canvas.text(GAP + 2, 42, subtitle, color=MUTED, fontsize=9, va="center")
    colors = _colors(list(panels.values()))
    col_px = (FIG_W - GAP) / 24
    top = HEADER
    for row, row_h in zip(rows, heights, strict=True):
        widths = [int(panels[t].spec["gridPos"]["w"]) for t in row]
        if sum(widths) != 24:
            widths = [24 // len(row)] * len(row)
        col = 0
        for title, width in zip(row, widths, strict=True):
            panel = panels[title]
            box = (round(GAP + col * col_px), top, round(width * col_px - GAP), row_h)
            _panel_frame(canvas, box, panel.title)
            if panel.kind == "stat":
                draw_stat(canvas, box, panel)
            elif panel.kind == "table":
                draw_table(canvas, box, panel)
            else:
                draw_timeseries(canvas, box, panel, window, colors)
            col += width
        top += row_h + GAP
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor=BG)
    print(f"render: wrote {path}", file=sys.stderr)


def _colors(panels: Sequence[Panel]) -> dict[str, str]:
    """A color per function (the same in every panel), then per other series name."""
    series = [s for p in panels for s in p.series]
    functions = sorted({s.labels["function"] for s in series if "function" in s.labels})
    others = sorted({s.name for s in series if "function" not in s.labels})
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(functions + others)}


# --------------------------------------------------------------------------- main


def _check_services(es_url: str, prom_url: str) -> None:
    from devkit.services import http_json

    for what, url in (
        ("Elasticsearch", f"{es_url}/_cluster/health"),
        ("Prometheus", f"{prom_url}/-/ready"),
    ):
        try:
            status, _ = http_json("GET", url, timeout=5)
        except OSError as exc:
            raise SystemExit(
                f"render: {what} at {url} does not answer ({exc}): scripts/stack up all"
            ) from exc
        if status != 200:
            raise SystemExit(f"render: {what} at {url} answered {status}")


MIN_MINUTES = 3.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=4.0,
        help="demo traffic to send, at least 3 (the picture starts one $__rate_interval in)",
    )
    parser.add_argument("--rate", type=float, default=150.0, help="demo invocations per second")
    parser.add_argument("--seed", type=int, default=7, help="demo random seed")
    parser.add_argument("--es-url", default="http://127.0.0.1:9200")
    parser.add_argument("--prometheus-url", default="http://127.0.0.1:9090")
    parser.add_argument(
        "--targets-dir",
        type=Path,
        default=STACK_DIR / "prometheus" / "targets",
        help="the file_sd directory Prometheus reads targets from (scripts/stack's by default)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)
    if args.minutes < MIN_MINUTES:
        parser.error(f"--minutes must be at least {MIN_MINUTES:g}: rate windows need a minute")

    from devkit.services import Prometheus, delete_es_prefix
    from devkit.worker import WorkerThread, worker_test_config

    es_url = args.es_url.rstrip("/")
    _check_services(es_url, args.prometheus_url.rstrip("/"))
    if not args.targets_dir.is_dir():
        raise SystemExit(f"render: no file_sd directory {args.targets_dir} (see --targets-dir)")
    datasources = {
        ds["uid"]: ds for ds in yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"]
    }
    dashboards = load_dashboards(DASHBOARDS_DIR)
    prefix = "render" + secrets.token_hex(4)
    with tempfile.TemporaryDirectory(prefix="faaslens-render-") as work:
        config = worker_test_config(es_url, prefix, Path(work), tcp_listen="", batch_max_wait_s=0.2)
        thread = WorkerThread(config)
        targets_file = args.targets_dir / f"render-{prefix}.json"
        prom = Prometheus(args.prometheus_url.rstrip("/"), targets_file)
        thread.start()
        try:
            worker = thread.running_worker(timeout=60)
            live = _feed(
                args=args,
                worker=worker,
                prom=prom,
                es_url=es_url,
                prefix=prefix,
                datasources=datasources,
            )
            others = _other_instances(live)
            if others:
                print(
                    f"render: note: other workers also counted: {', '.join(others)}",
                    file=sys.stderr,
                )
            begin = datetime.fromtimestamp(live.window.start, tz=UTC)
            stop = datetime.fromtimestamp(live.window.end, tz=UTC)
            subtitle = (
                f"demo traffic at {args.rate:g} invocations/s, "
                f"{begin:%Y-%m-%d %H:%M:%S} to {stop:%H:%M:%S} UTC; "
                f"$__interval {format_duration(live.window.interval_s)}, "
                f"$__rate_interval {format_duration(live.window.rate_interval_s)}; "
                "plotted by grafana/render.py from the panels' queries"
            )
            for name, rows, out in (
                ("overview.json", OVERVIEW_ROWS, "overview.png"),
                ("errors.json", ERRORS_ROWS, "errors.png"),
            ):
                dashboard = dashboards[name]
                panels = collect(live, dashboard, rows)
                plot(
                    path=args.out / out,
                    heading=dashboard["title"],
                    subtitle=subtitle,
                    panels=panels,
                    rows=rows,
                    window=live.window,
                )
        finally:
            try:
                thread.stop()
            finally:
                with contextlib.suppress(FileNotFoundError):
                    targets_file.unlink()
            deleted = delete_es_prefix(es_url, prefix)
            print(
                f"render: removed {len(deleted)} indices and templates of {prefix}", file=sys.stderr
            )
        if thread.error is not None:
            raise thread.error
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Plain-text rendering of query results: aligned tables and a record view for terminals."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from faaslens.query.client import ErrorGroup, InvocationView
from faaslens.query.loss import LossReport
from faaslens.query.timespec import format_ms

Json = dict[str, Any]
Row = Sequence[str]


def terminal_width() -> int:
    """Columns of the terminal; unlimited when output goes to a pipe or a file."""
    if not sys.stdout.isatty():
        return 1 << 30
    return shutil.get_terminal_size((120, 24)).columns


def one_line(value: Any) -> str:
    """A cell value on one line (newlines and tabs shown as spaces)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return " ".join(str(value).split())


def duration_ns(value: Any) -> str:
    """Nanoseconds as a short human duration (``812µs``, ``12.3ms``, ``1.52s``)."""
    if value is None:
        return "-"
    ns = float(value)
    if ns < 1e6:
        return f"{ns / 1e3:.0f}µs"
    if ns < 1e9:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.2f}s"


def size_bytes(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value) / (1024 * 1024):.0f}MiB"


def usd(value: Any) -> str:
    return "-" if value is None else f"${float(value):.8f}".rstrip("0").rstrip(".")


def table(headers: Row, rows: Sequence[Row], width: int | None = None) -> str:
    """Columns padded to their widest cell; the last column is cut to fit ``width``."""
    width = terminal_width() if width is None else width
    cols = len(headers)
    widths = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(cols)]
    fixed = sum(widths[:-1]) + 2 * (cols - 1)
    widths[-1] = max(len(headers[-1]), min(widths[-1], width - fixed)) if cols else 0

    def fmt(row: Row) -> str:
        cells = []
        for i, raw in enumerate(row):
            cell = raw if len(raw) <= widths[i] else raw[: max(widths[i] - 1, 0)] + "…"
            cells.append(cell if i == cols - 1 else cell.ljust(widths[i]))
        return "  ".join(cells).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


# Field -> formatter for the record view; other fields are shown as they are.
FORMATTERS: Mapping[str, Callable[[Any], str]] = {
    "@timestamp": format_ms,
    "event.start": format_ms,
    "event.end": format_ms,
    "event.duration": duration_ns,
    "faas.coldstart_duration": duration_ns,
    "faas.timeout": duration_ns,
    "faas.mem_usage": size_bytes,
    "faas.max_memory": size_bytes,
    "faas.cost.usd": usd,
    "faas.billed_duration": lambda v: "-" if v is None else f"{v}ms",
}


def record(doc: Mapping[str, Any], skip: Sequence[str] = ()) -> str:
    """A document as ``key: value`` lines, keys sorted, values formatted."""
    keys = sorted(k for k in doc if k not in skip)
    pad = max((len(k) for k in keys), default=0)
    lines = []
    for key in keys:
        value = doc[key]
        shown = FORMATTERS[key](value) if key in FORMATTERS else one_line(value)
        lines.append(f"{key.ljust(pad)}  {shown}")
    return "\n".join(lines)


def invocation_view(view: InvocationView, width: int | None = None) -> str:
    """The invocation record, then its log lines in order, then its errors with stack traces."""
    parts = [f"invocation {view.invocation_id}", ""]
    if view.record is None:
        parts.append("(no invocation record: only logs or errors were found)")
    else:
        stack = view.record.get("error.stack_trace")
        parts.append(record(view.record, skip=("error.stack_trace", "labels")))
        if view.record.get("labels"):
            parts.append(f"{'labels'.ljust(8)}  {one_line(view.record['labels'])}")
        if stack:
            parts += ["", "stack trace:", str(stack).rstrip()]
        if len(view.attempts) > 1:
            parts += ["", f"attempts ({len(view.attempts)}; the latest shown above)"]
            parts += [
                f"  {one_line(a.get('faas.attempt', 1))}  {format_ms(a.get('@timestamp'))}  "
                f"{one_line(a.get('event.outcome'))}  {one_line(a.get('error.type', ''))}"
                for a in view.attempts
            ]
    parts += ["", f"logs ({len(view.logs)} lines)"]
    if view.logs:
        rows = [
            [
                one_line(line.get("event.sequence")),
                format_ms(line.get("@timestamp")),
                one_line(line.get("log.level")),
                one_line(line.get("message")),
            ]
            for line in view.logs
        ]
        parts.append(table(["seq", "time", "level", "message"], rows, width))
    parts += ["", f"errors ({len(view.errors)})"]
    for err in view.errors:
        parts.append(
            f"{format_ms(err.get('@timestamp'))}  {one_line(err.get('error.type'))}: "
            f"{one_line(err.get('error.message'))}"
        )
        parts.append(f"  fingerprint {one_line(err.get('error.grouping_key'))}")
        if err.get("error.stack_trace") and err.get("error.stack_trace") != (view.record or {}).get(
            "error.stack_trace"
        ):
            parts.append(str(err["error.stack_trace"]).rstrip())
    return "\n".join(parts)


def invocations_table(docs: Sequence[Json], width: int | None = None) -> str:
    headers = ["time", "function", "invocation id", "outcome", "cold", "duration", "error"]
    rows = [
        [
            format_ms(d.get("@timestamp")),
            one_line(d.get("faas.name")),
            one_line(d.get("faas.execution")),
            one_line(d.get("event.outcome")),
            one_line(d.get("faas.coldstart")),
            duration_ns(d.get("event.duration")),
            one_line(d.get("error.type")) if d.get("error.type") else "",
        ]
        for d in docs
    ]
    return table(headers, rows, width)


def errors_table(groups: Sequence[ErrorGroup], width: int | None = None) -> str:
    headers = [
        "count",
        "first seen",
        "last seen",
        "fingerprint",
        "type",
        "sample invocation",
        "sample message",
    ]
    rows = [
        [
            str(g.count),
            format_ms(g.first_seen_ms),
            format_ms(g.last_seen_ms),
            g.grouping_key,
            one_line(g.error_type),
            one_line(g.sample_invocation),
            one_line(g.sample_message),
        ]
        for g in groups
    ]
    return table(headers, rows, width)


def loss_table(report: LossReport, width: int | None = None) -> str:
    """Per function, then per sender with losses: frames stored and missing."""
    per_function = [
        (name, str(stored), str(missing), f"{100 * missing / max(1, stored + missing):.3f}%")
        for name, (stored, missing) in sorted(report.by_function().items())
    ]
    out = [table(("function", "frames stored", "missing", "lost"), per_function, width)]
    lossy = [s for s in report.senders if s.missing]
    if lossy:
        rows = [
            (s.function, s.src, f"{s.first_seq}..{s.last_seq}", str(s.stored), str(s.missing))
            for s in lossy
        ]
        out += ["", table(("function", "sender", "seq", "stored", "missing"), rows, width)]
    out += [
        "",
        f"{len(report.senders)} senders; not judged: frames before the first or after the last "
        "sequence number seen per sender in the window.",
    ]
    return "\n".join(out)

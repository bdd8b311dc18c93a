"""The line metrics store: the aggregator's semantics, the worker's limits, and an
exposition that promtool and both prometheus_client parsers accept."""

from __future__ import annotations

import shutil
import subprocess

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_format
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from faaslens.ingest.lines_metrics import STORE_REASONS, LineMetrics
from faaslens.ingest.lines_parse import Observation, parse_line
from faaslens.ingest.metric_lint import name_problem

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture
def promtool_present() -> str:
    """promtool comes with Debian's prometheus package, which scripts/test installs:
    its absence is a failure, never a skip."""
    assert shutil.which(PROMTOOL), "promtool missing: run scripts/stack up prometheus"
    return PROMTOOL


def make(**kw: float) -> tuple[CollectorRegistry, LineMetrics]:
    registry = CollectorRegistry()
    overflow = Counter("faaslens_series_overflow", "o", ["metric"], registry=registry)
    expired = Counter("faaslens_series_expired", "e", registry=registry)
    store = LineMetrics(registry, overflow=overflow, expired=expired, **kw)  # type: ignore[arg-type]
    return registry, store


def feed(store: LineMetrics, *lines: str, now: float = 0.0) -> list[str | None]:
    out: list[str | None] = []
    for line in lines:
        parsed = parse_line(line.encode())
        assert isinstance(parsed, Observation), (line, parsed)
        out.append(store.observe(parsed, now))
    return out


def decl(
    name: str, kind: str, help_: str = "h", buckets: tuple[float, ...] | None = None
) -> Observation:
    return Observation(name, (), None, kind, help_, buckets)


def promtool(text: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.decode(), capture_output=True, text=True,
        check=False,
    )  # fmt: skip


def test_counters_add_gauges_set_histograms_bucket() -> None:
    registry, store = make()
    store.declare_all(
        [
            decl("jobs_total", "counter"),
            decl("pool_size", "gauge"),
            decl("req_duration_seconds", "histogram", buckets=(0.1, 1.0)),
        ],
        0.0,
    )
    got = feed(
        store,
        'jobs_total{a="x"} 1',
        'jobs_total{a="x"} 2.5',
        "pool_size{} 3",
        "pool_size{} 7",
        '{"name": "pool_size", "value": 2, "op": "add"}',
        "req_duration_seconds{} 0.1",  # le is inclusive
        "req_duration_seconds{} 0.5",
        "req_duration_seconds{} 5",
    )
    assert got == [None] * 8
    get = registry.get_sample_value
    assert get("jobs_total", {"a": "x"}) == 3.5
    assert get("pool_size") == 9
    assert get("req_duration_seconds_bucket", {"le": "0.1"}) == 1
    assert get("req_duration_seconds_bucket", {"le": "1.0"}) == 2
    assert get("req_duration_seconds_bucket", {"le": "+Inf"}) == 3
    assert get("req_duration_seconds_count") == 3
    assert get("req_duration_seconds_sum") == 5.6


def test_json_lines_declare_at_run_time_and_text_lines_need_a_declaration() -> None:
    registry, store = make()
    assert feed(store, "later_total{} 1", '{"name": "later_total", "value": 1}') == [
        "undeclared",
        "undeclared",
    ]
    custom = (
        '{"name":"hello_world_metric","type":"counter","help":"custom metric",'
        '"labels":{"function_name":"HelloWorld"},"value":1}'
    )
    assert feed(store, custom, 'hello_world_metric{function_name="HelloWorld"} 2') == [None, None]
    # A counter's samples end in _total, as Prometheus requires.
    assert (
        registry.get_sample_value("hello_world_metric_total", {"function_name": "HelloWorld"}) == 3
    )
    # A declaration without a value makes no series: nothing is exposed until one arrives.
    assert feed(store, '{"name": "quiet_total", "type": "counter", "help": "q"}') == [None]
    assert b"quiet" not in text_format(registry)


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (
            [
                '{"name": "x_total", "type": "counter", "help": "h"}',
                '{"name": "x_total", "type": "gauge", "value": 1}',
            ],
            "type_conflict",
        ),
        (
            ['{"name": "x_total", "type": "counter", "help": "h"}', "x_total{} -1"],
            "negative_counter",
        ),
        (['{"name": "x_total", "type": "gauge", "help": "h", "value": 1}'], "name_lint"),
        (['{"name": "fooBar", "type": "gauge", "help": "h", "value": 1}'], "name_lint"),
        (['{"name": "x_ms_total", "type": "counter", "help": "h", "value": 1}'], "name_lint"),
        (['{"name": "x_count", "type": "gauge", "help": "h", "value": 1}'], "name_lint"),
        (
            ['{"name": "x", "type": "gauge", "help": "h", "labels": {"le": "1"}, "value": 1}'],
            "label_lint",
        ),
        (
            ['{"name": "x", "type": "histogram", "help": "h", "labels": {"le": "1"}, "value": 1}'],
            "label_lint",
        ),
        (
            ['{"name": "x", "type": "gauge", "help": "h", "labels": {"myLabel": "1"}, "value": 1}'],
            "label_lint",
        ),
        (
            ['{"name": "faaslens_series_overflow_total", "type": "counter", "help": "h"}'],
            "name_conflict",
        ),
        (
            [
                '{"name": "y", "type": "counter", "help": "h"}',
                '{"name": "y_total", "type": "counter", "help": "h"}',
            ],
            "name_conflict",
        ),
        (['{"name": "x", "type": "gauge", "help": ""}'], "undeclared"),
    ],
)
def test_refusals_give_their_reason(lines: list[str], reason: str) -> None:
    _, store = make()
    got = feed(store, *lines)
    assert got[-1] == reason and reason in STORE_REASONS
    assert all(r is None for r in got[:-1])


def test_metrics_cap() -> None:
    _, store = make(metrics_cap=2)
    lines = [f'{{"name": "m{i}", "type": "gauge", "help": "h", "value": 1}}' for i in range(3)]
    assert feed(store, *lines) == [None, None, "too_many_metrics"]


def test_series_cap_folds_into_one_overflow_series() -> None:
    registry, store = make(series_cap=2)
    store.declare_all([decl("hits_total", "counter")], 0.0)
    assert feed(store, *(f'hits_total{{u="{i}"}} 1' for i in range(5))) == [None] * 5
    assert registry.get_sample_value("hits_total", {"u": "_overflow"}) == 3
    assert (
        registry.get_sample_value("faaslens_series_overflow_total", {"metric": "hits_total"}) == 3
    )


def test_idle_series_expire_and_run_time_metrics_go_with_them() -> None:
    registry, store = make(series_ttl_s=10)
    store.declare_all([decl("kept_total", "counter")], 0.0)
    feed(store, "kept_total{} 1", '{"name": "once", "type": "gauge", "help": "h", "value": 1}')
    feed(store, '{"name": "once", "value": 2}', now=5.0)
    assert store.sweep(12.0) == 1  # kept_total's series (last seen at 0)
    assert registry.get_sample_value("kept_total") is None
    assert registry.get_sample_value("once") == 2
    assert store.sweep(16.0) == 1
    assert registry.get_sample_value("faaslens_series_expired_total") == 2
    assert store.metrics == 1  # the file's declaration stays; the run-time one went
    # Its name is free again, even for another type.
    assert feed(
        store, '{"name": "once", "type": "histogram", "help": "h", "value": 1}', now=20
    ) == [None]
    assert feed(store, "kept_total{} 4", now=20) == [None]
    assert registry.get_sample_value("kept_total") == 4


def test_a_name_blocked_by_a_run_time_metric_is_free_once_that_one_expired() -> None:
    registry, store = make(series_ttl_s=10)
    y = '{"name": "y", "type": "counter", "help": "h", "value": 1}'
    y_total = '{"name": "y_total", "type": "gauge", "help": "h", "value": 5}'
    assert feed(store, y, y_total) == [None, "name_lint"]
    y_total = '{"name": "y_total", "type": "counter", "help": "h", "value": 5}'
    assert feed(store, y_total) == ["name_conflict"]  # y's samples are y_total
    store.sweep(20.0)
    assert feed(store, y_total, now=20.0) == [None]
    assert registry.get_sample_value("y_total") == 5


def test_a_bad_declaration_file_entry_is_an_error() -> None:
    _, store = make()
    with pytest.raises(ValueError, match="'x_total': name_lint"):
        store.declare_all([decl("x_total", "gauge")], 0.0)


_HOSTILE = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30
) | st.sampled_from(['"', "\\", "\n", '\\"', "\\n", "}", "# EOF", "a\nb 1"])


@settings(max_examples=60, deadline=None)
@given(help_=_HOSTILE.filter(str.strip), value=_HOSTILE, number=st.floats(0, 1e12))
def test_exposition_parses_whatever_the_help_and_label_values(
    help_: str, value: str, number: float
) -> None:
    registry, store = make()
    line = orjson.dumps({"name": "c_total", "type": "counter", "help": help_})
    parsed = parse_line(line)
    assert isinstance(parsed, Observation) and parsed.help == " ".join(help_.split())
    store.declare_all(
        [
            parsed,
            decl("g_bytes", "gauge", parsed.help),
            decl("h_seconds", "histogram", parsed.help, (0.5, 2.0)),
        ],
        0.0,
    )
    labels = (("v", value),)
    for name in ("c_total", "g_bytes", "h_seconds"):
        assert store.observe(Observation(name, labels, number), 0.0) is None
    for render, parse in ((text_format, parse_text), (openmetrics_format, parse_openmetrics)):
        families = {f.name: f for f in parse(render(registry).decode())}
        counter = families["c"] if "c" in families else families["c_total"]
        assert counter.documentation == parsed.help
        assert [(s.labels, s.value) for s in counter.samples if s.name == "c_total"] == [
            ({"v": value}, number)
        ]
        assert families["g_bytes"].samples[0].labels == {"v": value}


def test_promtool_accepts_the_exposition(promtool_present: str) -> None:
    registry, store = make()
    store.declare_all(
        [
            decl("function_invocations_total", "counter", 'Invocations "started"\\ \n here'),
            decl("pool_size_bytes", "gauge"),
            decl("req_duration_seconds", "histogram", buckets=(0.1, 1.0)),
        ],
        0.0,
    )
    feed(
        store,
        'function_invocations_total{function_name="He said \\"hi\\"\\n\\\\",app="ü"} 1',
        "pool_size_bytes{} 3",
        'req_duration_seconds{route="/a"} 0.3',
        '{"name":"hello_world_metric","type":"counter","help":"custom metric","value":1}',
    )
    done = promtool(text_format(registry))
    assert done.returncode == 0, done.stdout + done.stderr


NAMES = [
    ("function_invocations_total", "counter"),
    ("function_execution_time_total", "counter"),
    ("azure_monitor_gigabyteseconds_total", "counter"),
    ("function_gigabyte_seconds_total", "counter"),
    ("hello_world_metric_total", "counter"),
    ("jobs", "counter"),
    ("pool_total", "gauge"),
    ("pool_size", "gauge"),
    ("a:b", "gauge"),
    ("fooBar", "gauge"),
    ("x_counter", "gauge"),
    ("x_gauge_things", "gauge"),
    ("x_histogram", "histogram"),
    ("latency_ms", "gauge"),
    ("latency_milliseconds", "gauge"),
    ("latency_seconds", "histogram"),
    ("size_kilobytes", "gauge"),
    ("size_bits", "gauge"),
    ("temp_celsius", "gauge"),
    ("x_count", "gauge"),
    ("x_sum", "gauge"),
    ("x_bucket", "gauge"),
    ("y_count", "histogram"),
    ("uptime_hours", "gauge"),
    ("data_gb", "gauge"),
    ("x_s_total", "counter"),
]


def test_name_rules_agree_with_promtool(promtool_present: str) -> None:
    """One exposition holding every name; promtool's verdict per name against ours."""
    lines = []
    for name, kind in NAMES:
        sample = name + "_count" if kind == "histogram" else name
        lines += [f"# HELP {name} h", f"# TYPE {name} {kind}", f"{sample} 1"]
        if kind == "histogram":
            lines += [f'{name}_bucket{{le="+Inf"}} 1', f"{name}_sum 1"]
    done = promtool(("\n".join(lines) + "\n").encode())
    assert "error while linting" not in done.stderr, done.stderr
    flagged = {line.split(" ", 1)[0] for line in done.stderr.splitlines() if line}
    ours = {name for name, kind in NAMES if name_problem(name, kind) is not None}
    assert flagged == ours
    assert "pool_size" not in ours and "fooBar" in ours  # both verdicts occur

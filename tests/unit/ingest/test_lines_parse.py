"""The prometheus-aggregator line parser: the older library's lines, the forms the
aggregator accepts, and any bytes at all (accepted, or a bounded reason)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faaslens.ingest.lines_parse import (
    BUCKETS_MAX,
    LABEL_VALUE_MAX_CHARS,
    LABELS_MAX,
    LINE_MAX_BYTES,
    NAME_MAX_CHARS,
    PARSE_REASONS,
    DeclarationError,
    Observation,
    parse_declarations,
    parse_line,
)

REPO = Path(__file__).resolve().parents[3]
SEED_LABELS = '{function_name="HelloWorld",function_app="seed-app",environment="azure-cloud"}'
SEED_KEY = (
    ("environment", "azure-cloud"),
    ("function_app", "seed-app"),
    ("function_name", "HelloWorld"),
)


@pytest.mark.parametrize(
    ("line", "name", "labels", "value"),
    [
        (f"function_invocations_total{SEED_LABELS} 1", "function_invocations_total", SEED_KEY, 1),
        (
            f"function_execution_time_total{SEED_LABELS} 6.5",
            "function_execution_time_total",
            SEED_KEY,
            6.5,
        ),
        (f"function_finished_total{SEED_LABELS} 1", "function_finished_total", SEED_KEY, 1),
        (
            f"function_gigabyte_seconds_total{SEED_LABELS} 0.00208",
            "function_gigabyte_seconds_total",
            SEED_KEY,
            0.00208,
        ),
        (
            'azure_monitor_gigabyteseconds_total{function_app="seed-app"} 12.5',
            "azure_monitor_gigabyteseconds_total",
            (("function_app", "seed-app"),),
            12.5,
        ),
        ("myapp_worker_pool{} 2", "myapp_worker_pool", (), 2),
        ('  x{b="2",a="1",} -1.5e3\r', "x", (("a", "1"), ("b", "2")), -1500),
        ('x{a="q\\"uo\\\\te\\nd, {}"} .5', "x", (("a", 'q"uo\\te\nd, {}'),), 0.5),
        ('x{a="grüße"}\t7', "x", (("a", "grüße"),), 7),
    ],
)
def test_text_lines(
    line: str, name: str, labels: tuple[tuple[str, str], ...], value: float
) -> None:
    assert parse_line(line.encode()) == Observation(name, labels, float(value))


def test_the_json_custom_counter_of_the_older_library() -> None:
    line = (
        b'{"name":"hello_world_metric","type":"counter","help":"custom metric",'
        b'"labels":{"function_name":"HelloWorld"},"value":1}'
    )
    assert parse_line(line) == Observation(
        "hello_world_metric", (("function_name", "HelloWorld"),), 1.0, "counter", "custom metric"
    )


def test_json_forms_of_the_aggregator_readme() -> None:
    assert parse_line(b'{"name": "myapp_foo_total", "value": 1}') == Observation(
        "myapp_foo_total", (), 1.0
    )
    declaration = parse_line(
        b'{"name": "d_seconds", "type": "histogram", "help": "h", "buckets": [1, 0.5, 0.5, 10]}'
    )
    assert declaration == Observation("d_seconds", (), None, "histogram", "h", (0.5, 1.0, 10.0))
    gauge = parse_line(b'{"name": "pool", "labels": {"a": "b"}, "value": 3, "op": "add"}')
    assert gauge == Observation("pool", (("a", "b"),), 3.0, op="add")
    # Unknown keys are ignored, as the aggregator's JSON decoding ignores them.
    assert parse_line(b'{"name": "x", "value": 2, "extra": [1]}') == Observation("x", (), 2.0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"x 1", "bad_text"),  # braces are required
        (b"x{} 1 1700000000", "bad_text"),  # no timestamp
        (b"x{}", "bad_text"),
        (b"x{a=b} 1", "bad_text"),
        (b'x{a="1"', "bad_text"),
        (b"9x{} 1", "bad_text"),
        (b"x{} NaN", "bad_value"),
        (b"x{} +Inf", "bad_value"),
        (b"x{} 1e999", "bad_value"),
        (b"x{} 0x10", "bad_value"),
        (b"x{} 1_000", "bad_value"),
        (b'x{a="\\t"} 1', "bad_label"),  # only \\, \" and \n escapes
        (b'x{a="1",a="2"} 1', "bad_label"),
        (b'x{__name__="y"} 1', "bad_label"),
        (b'x{a="\xff"} 1', "bad_encoding"),
        (b"{", "bad_json"),
        (b"{}", "bad_name"),
        (b'{"name": "a-b", "value": 1}', "bad_name"),
        (b'{"name": "x", "value": "1"}', "bad_value"),
        (b'{"name": "x", "value": true}', "bad_value"),
        (b'{"name": "x", "type": "summary"}', "bad_type"),
        (b'{"name": "x", "help": 3}', "bad_type"),
        (b'{"name": "x", "labels": {"a": 1}}', "bad_label"),
        (b'{"name": "x", "labels": {"a b": "1"}}', "bad_label"),
        (b'{"name": "x", "labels": ["a"]}', "bad_label"),
        (b'{"name": "x", "buckets": [1, "2"]}', "bad_buckets"),
        (b'{"name": "x", "buckets": 1}', "bad_buckets"),
        (b'{"name": "x", "value": 1, "op": "mul"}', "bad_op"),
        (b"x{} " + b"1" * LINE_MAX_BYTES, "too_long"),
    ],
)
def test_refused_lines_give_their_reason(line: bytes, reason: str) -> None:
    assert parse_line(line) == reason


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_observation_or_a_bounded_reason(line: bytes) -> None:
    got = parse_line(line)
    assert isinstance(got, Observation) or got in PARSE_REASONS
    assert parse_line(line) == got  # the second time from the label memo: the same


_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
_LABEL_NAMES = _NAMES.filter(lambda n: not n.startswith("__"))
_VALUES = st.floats(allow_nan=False, allow_infinity=False)


def _text_line(name: str, labels: dict[str, str]) -> bytes:
    return (name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "} 1").encode()


def _json_line(name: str, labels: dict[str, str], buckets: int = 1) -> bytes:
    obj = {"name": name, "labels": labels, "type": "histogram", "help": "h", "value": 1}
    return orjson.dumps({**obj, "buckets": list(range(buckets))})


_AT_BOUND: list[tuple[str, dict[str, str], int]] = [
    ("n" * NAME_MAX_CHARS, {}, 1),
    ("m", {"k" * NAME_MAX_CHARS: "v"}, 1),
    ("m", {f"k{i}": "v" for i in range(LABELS_MAX)}, 1),
    ("m", {"k": "v" * LABEL_VALUE_MAX_CHARS}, 1),
    ("m", {}, BUCKETS_MAX),
]
_PAST_BOUND: list[tuple[str, dict[str, str], int]] = [
    ("n" * (NAME_MAX_CHARS + 1), {}, 1),
    ("m", {"k" * (NAME_MAX_CHARS + 1): "v"}, 1),
    ("m", {f"k{i}": "v" for i in range(LABELS_MAX + 1)}, 1),
    ("m", {"k": "v" * (LABEL_VALUE_MAX_CHARS + 1)}, 1),
    ("m", {}, BUCKETS_MAX + 1),
]


@pytest.mark.parametrize(("name", "labels", "buckets"), _AT_BOUND)
def test_what_a_series_keeps_is_accepted_up_to_its_bound(
    name: str, labels: dict[str, str], buckets: int
) -> None:
    assert isinstance(parse_line(_json_line(name, labels, buckets)), Observation)
    assert isinstance(parse_line(_text_line(name, labels)), Observation)


@pytest.mark.parametrize(("name", "labels", "buckets"), _PAST_BOUND)
def test_what_a_series_keeps_is_bounded_whatever_the_line_length(
    name: str, labels: dict[str, str], buckets: int
) -> None:
    """A line well within LINE_MAX_BYTES cannot make one series hold more than the
    bounds (a UDP datagram carries any line up to 65,507 bytes)."""
    assert parse_line(_json_line(name, labels, buckets)) == "too_large"
    if buckets == 1:  # text lines carry no buckets
        assert parse_line(_text_line(name, labels)) == "too_large"


def _text_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@settings(max_examples=300, deadline=None)
@given(_NAMES, st.dictionaries(_LABEL_NAMES, st.text(max_size=20), max_size=4), _VALUES)
def test_text_lines_round_trip(name: str, labels: dict[str, str], value: float) -> None:
    body = ",".join(f'{k}="{_text_escape(v)}"' for k, v in labels.items())
    got = parse_line(f"{name}{{{body}}} {value!r}".encode())
    assert got == Observation(name, tuple(sorted(labels.items())), value)


@settings(max_examples=300, deadline=None)
@given(
    _NAMES,
    st.dictionaries(_LABEL_NAMES, st.text(max_size=20), max_size=4),
    _VALUES,
    st.sampled_from(["counter", "gauge", "histogram"]),
    st.text(min_size=1, max_size=40),
)
def test_json_lines_round_trip(
    name: str, labels: dict[str, str], value: float, kind: str, help_: str
) -> None:
    line = orjson.dumps(
        {"name": name, "labels": labels, "value": value, "type": kind, "help": help_}
    )
    got = parse_line(line)
    one_line = " ".join(help_.split())
    assert got == Observation(name, tuple(sorted(labels.items())), value, kind, one_line)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                    max_leaves=12))  # fmt: skip
def test_any_json_value_gives_an_observation_or_a_bounded_reason(value: object) -> None:
    line = orjson.dumps({"name": "x", "value": value, "labels": value, "buckets": value})
    got = parse_line(line)
    assert isinstance(got, Observation) or got in PARSE_REASONS


def test_the_documented_declaration_file() -> None:
    path = REPO / "docs" / "examples" / "seed-declaration.json"
    got = parse_declarations(path.read_bytes(), str(path))
    assert [d.name for d in got] == [
        "function_invocations_total",
        "function_finished_total",
        "function_execution_time_total",
        "function_gigabyte_seconds_total",
        "azure_monitor_gigabyteseconds_total",
    ]
    assert {d.kind for d in got} == {"counter"} and all(d.help for d in got)


def test_the_aggregator_example_declarations() -> None:
    """The shape ``prometheus-aggregator -example`` prints."""
    data = b"""[
        {"name": "myservice_jobs_processed_total", "type": "counter",
         "help": "Total number of jobs processed."},
        {"name": "myservice_cache_size_bytes", "type": "gauge",
         "help": "Current size of cache in bytes."},
        {"name": "myservice_http_request_duration_seconds", "type": "histogram",
         "help": "HTTP request duraton in seconds.",
         "buckets": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]}
    ]"""
    got = parse_declarations(data)
    assert [d.kind for d in got] == ["counter", "gauge", "histogram"]
    assert got[2].buckets is not None and len(got[2].buckets) == 11


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not JSON"),
        (b"{}", "expected a JSON array"),
        (b"[1]", "decl.json[0]: expected an object"),
        (b'[{"name": "a", "type": "counter"}]', "decl.json[0] ('a'): needs a type and a help"),
        (
            b'[{"name": "a", "type": "counter", "help": "h"}, {"name": "b-c"}]',
            "[1] ('b-c'): bad_name",
        ),
    ],
)
def test_bad_declaration_files_name_the_entry(data: bytes, message: str) -> None:
    with pytest.raises(DeclarationError, match=re.escape(message)):
        parse_declarations(data, "decl.json")

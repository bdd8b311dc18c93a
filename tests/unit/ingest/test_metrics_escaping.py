"""Any string a function sends reaches /metrics escaped: both prometheus_client parsers
and ``promtool check metrics`` read every exposition, and read back the same strings."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_format
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.selfmetrics import SelfMetrics
from tests.unit.ingest.test_aggregates import record

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# Any code point, lone surrogates included (a Python string may hold them even if
# JSON text cannot), with the characters the formats treat specially made likely.
_chars = st.one_of(
    st.characters(codec=None),
    st.sampled_from(['"', "\\", "\n", "\r", "\t", "\x00", "{", "}", "#", "=", ",", " ", "\u2028"]),
)
strings = st.text(_chars, max_size=70)
ids = st.text(_chars, min_size=1, max_size=115)


def feed(agg: Aggregates, values: list[str], exec_ids: list[str], unit: str) -> None:
    for i, (v, exec_id) in enumerate(zip(values, exec_ids, strict=False)):
        agg.observe(
            record(
                **{
                    "faas.name": v,
                    "faas.version": v[::-1],
                    "service.environment": v[:3],
                    "cloud.region": v + "x",
                    "faas.execution": exec_id,
                    "trace.id": f"{i:032x}",
                    "event.duration": 1_000_000 * (i * 37 % 900 + 1),
                    "metrics": [
                        {"name": "orders", "kind": "counter", "value": 1, "labels": {"shop": v}},
                        {"name": "size", "kind": "histogram", "value": i, "unit": unit},
                    ],
                }
            ),
            float(i),  # a second apart: each observation may set its bucket's exemplar
        )


def promtool_check(body: str) -> None:
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=body.encode(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    # 0: fine; 3: lint remarks about names only. 1 means the text did not parse.
    out = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode in (0, 3), out
    assert "error while linting" not in out and "parsing error" not in out, out


def label_values(families: Any) -> set[str]:
    return {v for fam in families for s in fam.samples for v in s.labels.values()}


def exemplar_ids(families: Any) -> set[str]:
    return {
        s.exemplar.labels["invocation_id"]
        for fam in families
        for s in fam.samples
        if s.exemplar is not None
    }


def clean(value: str) -> str:
    """What a value becomes on /metrics: lone surrogates as U+FFFD, nothing else changed."""
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(strings, min_size=1, max_size=8),
    exec_ids=st.lists(ids, min_size=1, max_size=8),
    unit=st.text(_chars, max_size=16),
)
def test_any_string_renders_parsable_in_both_formats(
    values: list[str], exec_ids: list[str], unit: str
) -> None:
    reg = CollectorRegistry()
    SelfMetrics(reg)
    agg = Aggregates(reg)
    feed(agg, values, exec_ids, unit)
    n = min(len(values), len(exec_ids))
    want = {clean(v) for v in values[:n]}
    # The aggregates' own renderer (what /metrics serves) and prometheus_client's
    # rendering of the same registry (the collect path).
    own_text = agg.exposition(openmetrics=False)
    own_om = agg.exposition(openmetrics=True) + "# EOF\n"
    client_text = text_format(reg).decode()
    client_om = openmetrics_format(reg).decode()
    for body in (own_text, client_text):
        fams = list(parse_text(body))
        assert want <= label_values(fams)
        promtool_check(body)
    for body in (own_om, client_om):
        fams = list(parse_openmetrics(body))
        assert want <= label_values(fams)
        # Ids with a double quote get no exemplar (see aggregates._exemplar); any other
        # id may be one, and the observations are far enough apart that some is.
        eligible = {clean(e) for e in exec_ids[:n] if '"' not in e}
        assert exemplar_ids(fams) <= eligible
        assert bool(exemplar_ids(fams)) == bool(eligible)


@pytest.mark.parametrize(
    ("exec_id", "exemplar"),
    [('msg "42"\\x', False), ("back\\slash\\", True), ("new\nline", True), ("ü{}#,=", True)],
)
def test_an_id_with_quotes_and_backslashes_keeps_the_scrape_whole(
    exec_id: str, exemplar: bool
) -> None:
    reg = CollectorRegistry()
    agg = Aggregates(reg)
    feed(agg, ["checkout"], [exec_id], "ms")
    fams = list(parse_openmetrics(agg.exposition(openmetrics=True) + "# EOF\n"))
    assert exemplar_ids(fams) == ({exec_id} if exemplar else set())
    assert {f.name for f in fams} >= {"faas_invocations", "faas_custom_orders", "faas_custom_size"}


def test_custom_names_that_need_escaping_are_refused() -> None:
    """Names are never escaped: a name outside the protocol's rule is refused and counted."""
    reg = CollectorRegistry()
    agg = Aggregates(reg)
    bad = [
        {"name": 'a"b', "kind": "counter", "value": 1},
        {"name": "a\nb", "kind": "gauge", "value": 1},
        {"name": "ok", "kind": "counter", "value": 1, "labels": {'k"': "v"}},
        {"name": "ok2", "kind": "counter", "value": 1, "labels": {"k-1": "v"}},
        {"name": "1abc", "kind": "counter", "value": 1},
    ]
    agg.observe(record(metrics=bad), 0.0)
    text = agg.exposition(openmetrics=False)
    assert "faas_custom_" not in text
    rejected = reg.get_sample_value("faaslens_custom_metrics_rejected_total", {"reason": "invalid"})
    assert rejected == len(bad)

"""The settle table (ingest/pending.py) and the settler around it (ingest/settle.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faaslens.ingest.documents import UNFINISHED_REASON
from faaslens.ingest.events import Doc
from faaslens.ingest.pending import MAX_WAIT_S, Pending
from faaslens.ingest.settle import Settler
from faaslens.ingest.validate import Validator

RES = {"faas.name": "checkout", "cloud.provider": "aws"}
S = 1_000_000_000  # ns per second


def start(exec_id: str, timeout_s: int | None = None, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"faas.execution": exec_id, "@timestamp": 1_764_028_800_123, **fields}
    if timeout_s is not None:
        ev["faas.timeout"] = timeout_s * S
    return ev


def table(cap: int = 100, grace_s: float = 2.0, default_timeout_s: float = 60.0) -> Pending:
    return Pending(cap=cap, grace_s=grace_s, default_timeout_s=default_timeout_s)


def test_a_record_settles_its_start_and_nothing_becomes_unfinished() -> None:
    p = table()
    assert p.start(RES, start("a", 3), now=100.0)
    assert p.finish("a") == "settled"
    assert len(p) == 0
    assert p.due(10_000.0) == []


def test_a_start_without_record_is_due_at_timeout_plus_grace_not_before() -> None:
    p = table(grace_s=2.0)
    p.start(RES, start("a", 3), now=100.0)
    assert p.next_deadline() == 105.0
    assert p.due(104.9) == []
    (got,) = p.due(105.0)
    assert got[0] == "a"
    assert got[1].start["faas.execution"] == "a"
    assert len(p) == 0


def test_a_start_without_timeout_waits_the_default() -> None:
    p = table(grace_s=2.0, default_timeout_s=60.0)
    p.start(RES, start("a"), now=0.0)
    assert p.next_deadline() == 62.0


def test_a_fractional_timeout_is_rounded_up_never_shortened() -> None:
    p = table(grace_s=0.5)
    p.start(RES, {**start("a"), "faas.timeout": 2_000_000_001}, now=0.0)
    assert p.next_deadline() == 4.0  # ceil(2.000000001 s + 0.5 s)


def test_a_huge_timeout_claim_waits_a_day_at_most() -> None:
    p = table()
    p.start(RES, {**start("a"), "faas.timeout": (1 << 63) - 1}, now=0.0)
    assert p.next_deadline() == MAX_WAIT_S


def test_deadlines_of_different_timeouts_come_out_in_time_order() -> None:
    p = table(grace_s=0.0)
    p.start(RES, start("long", 30), now=0.0)
    p.start(RES, start("short", 1), now=1.0)
    assert [e for e, _ in p.due(2.0)] == ["short"]
    assert p.next_deadline() == 30.0
    assert [e for e, _ in p.due(30.0)] == ["long"]


def test_a_late_record_is_told_apart_once() -> None:
    p = table(grace_s=0.0)
    p.start(RES, start("a", 1), now=0.0)
    p.due(5.0)
    assert p.finish("a") == "late"
    assert p.finish("a") == "unseen"  # a resent frame: no second replacement needed


def test_a_start_reordered_behind_its_record_is_not_waited_for() -> None:
    p = table()
    p.start(RES, start("other", 60), now=0.0)  # starts are coming in
    assert p.finish("a") == "unseen"
    p.start(RES, start("a", 1), now=0.0)
    assert len(p) == 1  # "other" only
    assert [e for e, _ in p.due(1e9)] == ["other"]


def test_records_of_senders_without_start_events_are_not_remembered() -> None:
    p = table(cap=10)
    for i in range(100):
        assert p.finish(f"r{i}") == "unseen"
    assert p.is_empty() and not p._finished


def test_a_retry_with_the_same_id_replaces_the_pending_start() -> None:
    p = table(grace_s=0.0)
    p.start(RES, start("a", 5), now=0.0)
    p.start(RES, start("a", 5), now=3.0)
    assert len(p) == 1
    assert p.due(5.0) == []
    assert [e for e, _ in p.due(8.0)] == ["a"]


def test_a_retry_of_an_unfinished_invocation_still_replaces_its_document() -> None:
    """AWS retries reuse the request id: the retry's record must replace the first
    attempt's unfinished document, not be refused as a duplicate of it."""
    p = table(grace_s=0.0)
    p.start(RES, start("a", 1), now=0.0)
    assert [e for e, _ in p.due(2.0)] == ["a"]
    p.start(RES, start("a", 1), now=3.0)  # the retry
    assert p.finish("a") == "late"
    assert len(p) == 0 and p.due(1e9) == []


def test_the_table_is_capped_and_overflow_counted() -> None:
    p = table(cap=2)
    assert p.start(RES, start("a"), 0.0)
    assert p.start(RES, start("b"), 0.0)
    assert not p.start(RES, start("c"), 0.0)
    assert p.overflow == 1
    assert len(p) == 2
    assert p.finish("c") == "unseen"  # its record is just a record


def test_remembered_ids_are_capped() -> None:
    p = table(cap=3, grace_s=0.0)
    for i in range(10):
        p.start(RES, start(f"id{i}", 1), now=float(i))
        p.due(float(i) + 1)
    assert p.finish("id0") == "unseen"  # forgotten: only the 3 newest are remembered
    assert p.finish("id9") == "late"


def test_dump_and_load_keep_entries_and_count_the_downtime() -> None:
    p = table(grace_s=0.0)
    p.start(RES, start("a", 10), now=100.0)
    p.start(RES, start("b", 20), now=100.0)
    p.start(RES, start("gone", 1), now=100.0)
    p.due(101.0)
    data = p.dump(now=102.0, wall_ms=1_000_000)  # a: 8 s left, b: 18 s left
    q = table(grace_s=0.0)
    assert q.load(data, now=5.0, wall_ms=1_003_000) == 2  # down for 3 s
    assert q.next_deadline() == pytest.approx(10.0)  # 5 + 8 - 3
    assert [e for e, _ in q.due(10.0)] == ["a"]
    assert q.finish("gone") == "late"
    assert q.finish("b") == "settled"


@pytest.mark.parametrize("data", [b"", b"[]", b'{"v":99}', b'{"v":1}', b'{"v":1,"saved_at":0,'])
def test_unreadable_state_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"pending state|version"):
        table().load(data, 0.0, 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["start", "finish", "tick"]),
            st.integers(0, 5),  # which id
            st.sampled_from([None, 1, 3]),  # timeout (s)
        ),
        max_size=60,
    )
)
def test_every_start_is_settled_exactly_once(ops: list[tuple[str, int, int | None]]) -> None:
    """Model check: a started id ends either by its record or in due(), never both,
    never twice; a record after due() is 'late'."""
    p = table(cap=4, grace_s=1.0)
    now = 0.0
    open_: set[str] = set()
    unfinished: set[str] = set()
    for op, n, timeout in ops:
        exec_id = f"id{n}"
        if op == "start":
            if p.start(RES, start(exec_id, timeout), now) and exec_id in p:
                open_.add(exec_id)
        elif op == "finish":
            got = p.finish(exec_id)
            if exec_id in unfinished:  # its document must be replaced, retried or not
                assert got == "late"
                unfinished.discard(exec_id)
                open_.discard(exec_id)
            elif exec_id in open_:
                assert got == "settled"
                open_.discard(exec_id)
            else:
                assert got == "unseen"
        else:
            now += 2.0
            for exec_id, _ in p.due(now):
                assert exec_id in open_
                open_.discard(exec_id)
                unfinished.add(exec_id)
        assert len(p) == len(open_) <= 4
    p.due(1e12)
    assert len(p) == 0


# ------------------------------------------------------------------ settler


def _settler(**kw: Any) -> tuple[Settler, list[dict[str, Any]], list[dict[str, Any]]]:
    started: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    s = Settler(
        table(**kw),
        lambda res, start, now: started.append(res | start),
        lambda res, start, now: gone.append(res | start),
    )
    return s, started, gone


def test_an_unfinished_invocation_becomes_a_document_under_the_record_id() -> None:
    s, started, gone = _settler(grace_s=1.0)
    s.started([(RES, start("a", 2, **{"faas.coldstart": True}))], now=0.0)
    assert started == [{**RES, **start("a", 2), "faas.coldstart": True}]
    assert s.settle_due(2.9) == []
    (doc,) = s.settle_due(3.0)
    assert (doc.kind, doc.doc_id, doc.day, doc.op) == ("invocations", "a", "2025.11.25", "create")
    assert orjson.loads(doc.source) == {
        **RES,
        **start("a", 2),
        "faas.coldstart": True,
        "event.dataset": "faas.invocation",
        "event.kind": "event",
        "event.outcome": "unknown",
        "event.reason": UNFINISHED_REASON,
        "event.start": 1_764_028_800_123,
    }
    assert len(gone) == 1
    assert s.unfinished == 1


def test_a_late_record_replaces_the_unfinished_document() -> None:
    s, _, _ = _settler(grace_s=0.0)
    v = Validator()
    s.started([(RES, start("a", 1))], now=0.0)
    s.settle_due(5.0)
    frame = orjson.dumps(
        {
            "v": 1,
            "src": "s",
            "seq": 2,
            "res": RES,
            "ev": [
                {
                    "t": "inv",
                    "faas.execution": "a",
                    "@timestamp": 1_764_028_800_123,
                    "event.duration": 5,
                    "event.outcome": "failure",
                    "faas.coldstart": False,
                    "error.type": "X",
                }
            ],
        }
    )
    res = v.validate(frame)
    s.finished(res.invocations, res.docs)
    assert [(d.kind, d.op) for d in res.docs] == [("invocations", "index"), ("errors", "create")]
    assert s.late == 1
    again = v.validate(frame)
    s.finished(again.invocations, again.docs)
    assert all(d.op == "create" for d in again.docs)


def test_doc_op_defaults_to_create() -> None:
    assert Doc("logs", "x", "2025.11.25", b"{}").op == "create"


# ------------------------------------------------------------------ names on /metrics


def test_settle_metrics_pass_promtool() -> None:
    """The started/unfinished aggregates and the worker's settle figures, as exposed."""
    import shutil
    import subprocess

    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from faaslens.ingest.aggregates import Aggregates
    from faaslens.ingest.selfmetrics import SelfMetrics

    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    registry = CollectorRegistry()
    agg = Aggregates(registry)
    s = Settler(table(grace_s=0.0), agg.observe_started, agg.observe_unfinished)
    SelfMetrics(registry).watch_settling(lambda: (len(s.pending), s.pending.overflow, s.late))
    s.started([(RES, start("a", 1)), (RES, start("b", 1))], now=0.0)
    s.settle_due(5.0)
    text = generate_latest(registry).decode()
    for name in (
        "faas_invocations_started_total",
        "faas_invocations_unfinished_total",
        "faaslens_pending_invocations",
        "faaslens_pending_overflow_total",
        "faaslens_unfinished_replaced_total",
    ):
        assert f"\n{name}" in text, name
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

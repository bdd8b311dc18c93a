"""Start events and the periodic flush of a long invocation's lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from faaslens.ingest.validate import Validator
from faaslens.shipper.config import load_config
from faaslens.shipper.logs import Logger
from tests.support import poll_until
from tests.unit.shipper.kit import LambdaContext, Receiver, make_shipper, receivers


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def test_start_event_leaves_before_the_handler_runs_then_the_record(rx: Receiver) -> None:
    sh = make_shipper(rx, start_events=True, environ={"AWS_LAMBDA_FUNCTION_NAME": "checkout"})
    seen_inside: list[dict[str, Any]] = []

    @sh.instrument(trigger="http")
    def handler(event: Any, context: Any) -> str:
        seen_inside.extend(rx.events())
        return "ok"

    handler({}, LambdaContext(request_id="req-1", remaining_ms=3000))
    (start,) = seen_inside
    assert start["t"] == "start"
    assert start["faas.execution"] == "req-1"
    assert start["faas.timeout"] == 3000 * 1_000_000  # the deadline left at the start, in ns
    assert start["faas.coldstart"] is True
    assert start["faas.trigger.type"] == "http"
    assert "event.duration" not in start
    (record_env,) = rx.envelopes()
    assert record_env["seq"] == 2  # the same frame stream: sequence accounting holds
    (record,) = record_env["ev"]
    assert (record["t"], record["faas.execution"]) == ("inv", "req-1")
    assert record["@timestamp"] == start["@timestamp"]


def test_the_worker_reads_the_start_event_as_sent(rx: Receiver) -> None:
    sh = make_shipper(rx, start_events=True)
    with sh.invocation(execution_id="x-1", name="nightly", trigger="timer"):
        pass
    start_frame, record_frame = rx.frames()
    result = Validator().validate(start_frame)
    assert result.rejected is None and result.event_rejections == [] and result.docs == []
    assert result.unknown_fields == 0
    ((res, start),) = result.starts
    assert {**res, **start}["faas.name"] == "nightly"
    assert start["faas.execution"] == "x-1"
    assert Validator().validate(record_frame).invocations[0]["faas.execution"] == "x-1"


@pytest.mark.parametrize("how", ["setting", "environment"])
def test_start_events_switch_off(rx: Receiver, how: str) -> None:
    if how == "setting":
        sh = make_shipper(rx, start_events=False)
    else:
        cfg = load_config({"FAASLENS_START_EVENTS": "off", "FAASLENS_ENDPOINT": rx.endpoint})
        assert cfg.start_events is False
        sh = make_shipper(rx, **{k: getattr(cfg, k) for k in ("endpoint", "start_events")})
    sh.instrument(lambda: None)()
    assert [ev["t"] for ev in rx.events()] == ["inv"]


def test_start_events_are_on_by_default() -> None:
    assert load_config({}).start_events is True
    assert load_config({"FAASLENS_START_EVENTS": ""}).start_events is True


def test_a_short_invocation_sends_its_lines_once_with_the_record(rx: Receiver) -> None:
    sh = make_shipper(rx, start_events=True, flush_interval_ms=60_000)
    log = Logger("t", shipper=sh)
    with sh.invocation(execution_id="short"):
        log.info("one")
        log.info("two")
    envs = rx.envelopes()
    assert [[ev["t"] for ev in env["ev"]] for env in envs] == [["start"], ["inv", "log", "log"]]
    assert sh.snapshot()["lines_flushed"] == 0


def test_lines_of_a_long_invocation_leave_before_it_ends(rx: Receiver) -> None:
    sh = make_shipper(rx, start_events=False, flush_interval_ms=100)
    log = Logger("t", shipper=sh)
    got: list[dict[str, Any]] = []
    with sh.invocation(execution_id="long"):
        log.info("before the crash", step=1)
        # The invocation runs on; its line must reach the receiver meanwhile.
        poll_until(
            lambda: got.extend(rx.events()) or [e for e in got if e["t"] == "log"],
            timeout=10,
            what="flushed line",
        )
        log.info("after the flush", step=2)
    got += rx.events()
    lines = [e for e in got if e["t"] == "log"]
    assert [e["message"] for e in lines] == ["before the crash", "after the flush"]
    assert [e["event.sequence"] for e in lines] == [0, 1]
    assert all(e["faas.execution"] == "long" for e in lines)
    record = next(e for e in got if e["t"] == "inv")
    assert record["faas.execution"] == "long"
    assert sh.snapshot()["lines_flushed"] == 1
    sh.close()


def test_flush_disabled_starts_no_thread(rx: Receiver) -> None:
    sh = make_shipper(rx, flush_interval_ms=0)
    sh.instrument(lambda: None)()
    assert sh._flusher is None
    assert orjson.loads(rx.frames()[0])["ev"][0]["t"] == "inv"


def test_flush_schedule_lines_leave_within_three_quarters_of_the_interval(rx: Receiver) -> None:
    """Invocations younger than half the interval keep their lines; older ones send them
    (the thread wakes every quarter interval: a line leaves within 3/4 of it)."""
    from faaslens.shipper.flusher import Flusher

    sh = make_shipper(rx, start_events=False, flush_interval_ms=1000)
    # A flusher thread that does nothing: this test calls the flush itself, at set times.
    flusher = sh._flusher = Flusher(1.0, lambda now: None)
    log = Logger("t", shipper=sh)
    ms = 1_000_000
    with sh.invocation(execution_id="sched") as inv:
        log.info("early")
        sh._flush_running(inv.t0 + 499 * ms)
        assert rx.events() == []  # younger than half the interval: nothing yet
        sh._flush_running(inv.t0 + 500 * ms)
        assert [e["message"] for e in rx.events()] == ["early"]
        sh._flush_running(inv.t0 + 750 * ms)
        assert rx.events() == []  # nothing new to send
    assert flusher._period == 0.25
    sh.close()  # stops the flusher

"""Records of handlers run by the real Lambda runtime (emulator + awslambdaric), field by
field against the runtime's own REPORT lines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.runtimes import LambdaRuntime, Receiver

APP = """
import time
import faaslens

log = faaslens.get_logger("app")

@faaslens.instrument
def handler(event, context):
    for i in range(event.get("lines", 0)):
        log.info("line", n=i)
    if event.get("sleep_ms"):
        time.sleep(event["sleep_ms"] / 1000)  # workload, not a wait: a handler that runs on
    if event.get("fail"):
        raise ValueError("bad order " + context.aws_request_id)
    return {"ok": context.aws_request_id}
"""

# How far the shipper's duration may sit below the runtime's: the runtime's figure also
# covers awslambdaric fetching the event and posting the response (loaded CI machines).
DURATION_SLACK_MS = 25.0


def test_records_match_the_runtime_reports(
    lambda_runtime: Callable[..., LambdaRuntime], udp_receiver: Receiver
) -> None:
    fn = lambda_runtime(APP, env={"FAASLENS_ENDPOINT": udp_receiver.endpoint})
    assert fn.invoke({"lines": 3}, "req-1") == (200, b'{"ok": "req-1"}')
    assert fn.invoke({"sleep_ms": 120}, "req-2")[0] == 200
    status, body = fn.invoke({"fail": True}, "req-3")
    assert status == 200 and b"ValueError" in body  # the runtime's error response

    first, second, third = udp_receiver.wait_records(3)
    assert [r["faas.execution"] for r in (first, second, third)] == ["req-1", "req-2", "req-3"]
    assert [r["event.outcome"] for r in (first, second, third)] == [
        "success",
        "success",
        "failure",
    ]
    assert third["error.type"] == "ValueError"
    assert third["error.message"] == "bad order req-3"
    # Cold start once per process.
    assert [r["faas.coldstart"] for r in (first, second, third)] == [True, False, False]
    for rec in (first, second, third):
        assert rec["faas.name"] == "rie-fn"
        assert rec["cloud.region"] == "us-east-1"
        assert rec["faas.max_memory"] == 512 * 1024 * 1024
    # Durations against the runtime's own (warm invocations: no init in them).
    report = fn.report("req-2")
    ours_ms = second["event.duration"] / 1e6
    assert 120 <= ours_ms <= report["Duration"] + 1
    assert report["Duration"] - ours_ms <= DURATION_SLACK_MS
    # Log lines in order, with the invocation.
    lines = [
        ev for ev in udp_receiver.events() if ev.get("t") == "log" and ev.get("message") == "line"
    ]
    assert [ev["labels"]["n"] for ev in lines] == [0, 1, 2]
    assert {ev["faas.execution"] for ev in lines} == {"req-1"}


SLOW_INIT_APP = """
import time
import faaslens

time.sleep(0.3)  # workload, not a wait: a slow import, part of the init phase

@faaslens.instrument
def handler(event, context):
    if event.get("sleep_s"):
        time.sleep(event["sleep_s"])  # workload, not a wait: runs into its timeout
    return "ok"
"""

# The runtime's figures and ours are taken at different points (its init starts before
# the Python process, ours at the process's start, read from /proc at 10 ms resolution).
INIT_TOLERANCE_MS = 60.0


def test_cold_start_bills_the_init_phase_as_the_runtime_does(
    lambda_runtime: Callable[..., LambdaRuntime], udp_receiver: Receiver
) -> None:
    fn = lambda_runtime(SLOW_INIT_APP, env={"FAASLENS_ENDPOINT": udp_receiver.endpoint})
    assert fn.invoke({}, "cold-1")[0] == 200
    assert fn.invoke({}, "warm-1")[0] == 200
    cold, warm = udp_receiver.wait_records(2)
    (init_ms,) = fn.init_reports()
    assert init_ms >= 300
    ours_init_ms = cold["faas.coldstart_duration"] / 1e6
    assert abs(ours_init_ms - init_ms) <= INIT_TOLERANCE_MS, (ours_init_ms, init_ms)
    # The emulator's cold REPORT has Duration = init + invoke and bills that.
    report = fn.report("cold-1")
    assert abs(cold["faas.billed_duration"] - report["Billed Duration"]) <= INIT_TOLERANCE_MS
    assert cold["faas.cost.gb_seconds"] == pytest.approx(
        0.5 * cold["faas.billed_duration"] / 1000, rel=1e-6
    )
    warm_report = fn.report("warm-1")
    assert "faas.coldstart_duration" not in warm
    assert warm["faas.billed_duration"] <= warm_report["Billed Duration"]
    assert warm_report["Billed Duration"] - warm["faas.billed_duration"] <= DURATION_SLACK_MS


def test_timeout_is_billed_to_the_limit(
    lambda_runtime: Callable[..., LambdaRuntime], udp_receiver: Receiver
) -> None:
    fn = lambda_runtime(
        SLOW_INIT_APP, env={"FAASLENS_ENDPOINT": udp_receiver.endpoint}, timeout_s=2
    )
    assert fn.invoke({}, "warmup")[0] == 200
    _, body = fn.invoke({"sleep_s": 5}, "too-slow")
    assert b"Task timed out after 2.00 seconds" in body
    _, late = udp_receiver.wait_records(2)
    report = fn.report("too-slow")
    assert late["faas.execution"] == "too-slow"
    assert late["event.outcome"] == "failure" and late["error.type"] == "faaslens.Timeout"
    assert report["Billed Duration"] == 2000
    assert late["faas.billed_duration"] == 2000
    assert late["event.duration"] == 2_000_000_000
    # The runtime was killed at the deadline; the next invocation starts a new process.
    assert fn.invoke({}, "after")[0] == 200
    third = udp_receiver.wait_records(3)[2]
    assert third["faas.execution"] == "after" and third["faas.coldstart"] is True


def test_a_retried_request_id_is_a_second_attempt(
    lambda_runtime: Callable[..., LambdaRuntime], udp_receiver: Receiver
) -> None:
    """An async retry redelivers the request id to the same sandbox after a failure."""
    fn = lambda_runtime(APP, env={"FAASLENS_ENDPOINT": udp_receiver.endpoint})
    assert b"ValueError" in fn.invoke({"fail": True, "lines": 1}, "retry-me")[1]
    assert fn.invoke({"lines": 1}, "retry-me") == (200, b'{"ok": "retry-me"}')
    first, second = udp_receiver.wait_records(2)
    assert (first["event.outcome"], first.get("faas.attempt", 1)) == ("failure", 1)
    assert (second["event.outcome"], second["faas.attempt"]) == ("success", 2)
    lines = [ev for ev in udp_receiver.events() if ev.get("t") == "log"]
    assert [ev.get("faas.attempt", 1) for ev in lines] == [1, 2]

"""Records of handlers run by the real Lambda runtime (emulator + awslambdaric), field by
field against the runtime's own REPORT lines."""

from __future__ import annotations

from collections.abc import Callable

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
        time.sleep(event["sleep_ms"] / 1000)
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

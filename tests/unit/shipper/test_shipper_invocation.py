"""The invocation record: one per call, outcome, errors, cold starts, isolation, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from faaslens.shipper.errors import fingerprint
from faaslens.shipper.logs import Logger
from faaslens.shipper.metrics import Counter
from faaslens.shipper.transport import Transport
from tests.support import poll_until
from tests.unit.shipper.kit import (
    TS,
    FixedClock,
    LambdaContext,
    Receiver,
    by_type,
    make_shipper,
    receivers,
)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def test_one_record_per_call_with_fixed_clock(rx: Receiver) -> None:
    sh = make_shipper(rx, clock=FixedClock(), service="svc", environment="prod")

    @sh.instrument(name="hello", trigger="http")
    def handler(x: int) -> int:
        return x + 1

    assert handler(1) == 2
    envs = rx.envelopes()
    assert len(envs) == 1
    env = envs[0]
    assert env["v"] == 1 and env["src"] == "test-src" and env["seq"] == 1
    assert env["res"]["service.name"] == "svc"
    assert env["res"]["service.environment"] == "prod"
    (inv,) = env["ev"]
    assert inv["t"] == "inv"
    assert inv["faas.execution"] == "exec-0001"
    assert inv["@timestamp"] == TS
    assert inv["event.duration"] == 1_000_000  # two clock readings 1 ms apart
    assert inv["event.outcome"] == "success"
    assert inv["faas.coldstart"] is True
    assert inv["faas.coldstart_duration"] == 250_000_000
    assert inv["faas.trigger.type"] == "http"
    assert inv["faas.name"] == "hello"
    assert inv["faas.mem_usage"] == 64 * 1024 * 1024
    handler(2)
    (env2,) = rx.envelopes()
    assert env2["seq"] == 2
    assert env2["ev"][0]["faas.coldstart"] is False
    assert "faas.coldstart_duration" not in env2["ev"][0]


def test_exception_reraised_untouched_and_recorded(rx: Receiver) -> None:
    sh = make_shipper(rx)
    boom = KeyError("missing")

    @sh.instrument
    def handler() -> None:
        raise boom

    with pytest.raises(KeyError) as caught:
        handler()
    assert caught.value is boom
    assert caught.value.__traceback__ is not None
    (inv,) = rx.events()
    assert inv["event.outcome"] == "failure"
    assert inv["error.type"] == "KeyError"
    assert inv["error.message"] == "'missing'"
    assert "raise boom" in inv["error.stack_trace"]
    assert "Traceback" in inv["error.stack_trace"]
    assert len(inv["error.grouping_key"]) == 16


def test_stack_trace_never_holds_locals(rx: Receiver) -> None:
    sh = make_shipper(rx)

    @sh.instrument
    def handler() -> None:
        secret_local = "hunter2-do-not-ship"  # noqa: F841
        raise RuntimeError("failed")

    with pytest.raises(RuntimeError):
        handler()
    (inv,) = rx.events()
    assert "hunter2-do-not-ship" not in inv["error.stack_trace"].replace(
        'secret_local = "hunter2-do-not-ship"', ""
    )


def _raise_at(line_offset: int) -> BaseException:
    """Define and call a failing function whose code starts ``line_offset`` lines down."""
    source = "\n" * line_offset + "def failing():\n    x = 1\n    raise ValueError(x)\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "/srv/app/handler.py", "exec"), namespace)
    try:
        namespace["failing"]()
    except ValueError as exc:
        return exc
    raise AssertionError("did not raise")


def test_fingerprint_stable_across_line_shifts() -> None:
    a, b = _raise_at(0), _raise_at(40)
    assert fingerprint(a) == fingerprint(b)
    try:
        raise ValueError(1)
    except ValueError as other:
        assert fingerprint(other) != fingerprint(a)  # another function, another fingerprint


def test_async_handler(rx: Receiver) -> None:
    sh = make_shipper(rx)
    log = Logger("a", shipper=sh)

    @sh.instrument
    async def handler(n: int) -> int:
        log.info("before")
        # Suspend on a future the loop completes on its next turn.
        loop = asyncio.get_running_loop()
        resumed = loop.create_future()
        loop.call_soon(resumed.set_result, None)
        await resumed
        log.info("after")
        return n * 2

    assert asyncio.run(handler(21)) == 42
    events = rx.events()
    assert [e["t"] for e in events] == ["inv", "log", "log"]
    assert [e["message"] for e in events[1:]] == ["before", "after"]


def test_async_exception(rx: Receiver) -> None:
    sh = make_shipper(rx)

    @sh.instrument
    async def handler() -> None:
        raise ConnectionError("db down")

    with pytest.raises(ConnectionError, match="db down"):
        asyncio.run(handler())
    (inv,) = rx.events()
    assert inv["event.outcome"] == "failure"
    assert inv["error.type"] == "ConnectionError"


def test_concurrent_asyncio_tasks_keep_their_lines(rx: Receiver) -> None:
    sh = make_shipper(rx, max_datagram=65_000)
    log = Logger("t", shipper=sh)

    barrier: asyncio.Barrier | None = None

    @sh.instrument
    async def handler(i: int) -> None:
        assert barrier is not None
        for step in range(5):
            log.info("step", who=i, step=step)
            await barrier.wait()  # every task logs each step before any goes on

    async def main() -> None:
        nonlocal barrier
        barrier = asyncio.Barrier(10)
        await asyncio.gather(*(handler(i) for i in range(10)))

    asyncio.run(main())
    events = rx.events()
    invs = by_type(events, "inv")
    assert len(invs) == 10
    owner: dict[str, set[int]] = {}
    for ev in by_type(events, "log"):
        owner.setdefault(ev["faas.execution"], set()).add(ev["labels"]["who"])
    assert len(owner) == 10
    assert all(len(whos) == 1 for whos in owner.values())
    for ev in by_type(events, "log"):
        assert ev["event.sequence"] == ev["labels"]["step"]


def test_concurrent_threads_keep_their_lines(rx: Receiver) -> None:
    sh = make_shipper(rx, max_datagram=65_000)
    log = Logger("t", shipper=sh)
    barrier = threading.Barrier(8)

    @sh.instrument
    def handler(i: int) -> None:
        log.info("first", who=i)
        barrier.wait(timeout=10)
        log.info("second", who=i)

    threads = [threading.Thread(target=handler, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    events = rx.events()
    assert len(by_type(events, "inv")) == 8
    per_exec: dict[str, list[int]] = {}
    for ev in by_type(events, "log"):
        per_exec.setdefault(ev["faas.execution"], []).append(ev["labels"]["who"])
    assert len(per_exec) == 8
    assert all(len(set(v)) == 1 and len(v) == 2 for v in per_exec.values())


def test_context_manager_sync_and_async(rx: Receiver) -> None:
    sh = make_shipper(rx)
    with sh.invocation(execution_id="job-1", name="nightly", trigger="timer") as inv:
        inv.set_label("batch", 7)
    (ev,) = rx.events()
    assert ev["faas.execution"] == "job-1"
    assert ev["faas.trigger.type"] == "timer"
    assert ev["labels"] == {"batch": "7"}

    async def run() -> None:
        async with sh.invocation(execution_id="job-2"):
            raise ValueError("x")

    with pytest.raises(ValueError):
        asyncio.run(run())
    (ev2,) = rx.events()
    assert ev2["faas.execution"] == "job-2"
    assert ev2["event.outcome"] == "failure"


class _Exploding(Transport):
    """A transport whose send fails in an unexpected way."""

    def send(self, frames: Any) -> None:
        raise RuntimeError("transport bug")

    def close(self) -> None:
        pass


def test_shipper_failures_never_reach_the_handler(rx: Receiver) -> None:
    sh = make_shipper(rx)
    sh._transport = _Exploding()

    @sh.instrument
    def handler() -> str:
        return "ok"

    assert handler() == "ok"
    assert sh.snapshot()["internal_errors"] == 1


def test_provisioned_concurrency_is_not_a_cold_start(rx: Receiver) -> None:
    sh = make_shipper(rx, environ={"AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency"})
    sh.instrument(lambda: None)()
    (ev,) = rx.events()
    assert ev["faas.coldstart"] is False
    assert "faas.coldstart_duration" not in ev


def test_aws_invocation_record(rx: Receiver) -> None:
    sh = make_shipper(
        rx,
        environ={
            "AWS_LAMBDA_FUNCTION_NAME": "checkout",
            "AWS_REGION": "eu-west-1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;"
            "Parent=53995c3f42cd8ad8;Sampled=1",
        },
        clock=FixedClock(),
    )

    @sh.instrument
    def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
        return {"statusCode": 200}

    handler({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, LambdaContext())
    (env,) = rx.envelopes()
    assert env["res"]["faas.name"] == "checkout"
    assert env["res"]["faas.max_memory"] == 512 * 1024 * 1024
    (inv,) = env["ev"]
    assert inv["faas.execution"] == "c6af9ac6-7b61-11e6-9a41-93e812345678"
    assert inv["faas.trigger.type"] == "pubsub"
    assert inv["trace.id"] == "5759e988bd862e3fe1be46a994272793"
    assert inv["span.id"] == "53995c3f42cd8ad8"
    assert inv["cloud.account.id"] == "123456789012"
    assert inv["faas.id"] == "arn:aws:lambda:eu-west-1:123456789012:function:checkout"
    assert "faas.name" not in inv  # same as the resource block's
    # A cold start on demand bills its init phase (250 ms on FixedClock) with the 1 ms run.
    assert inv["faas.coldstart"] is True
    assert inv["faas.billed_duration"] == 251
    assert inv["faas.cost.gb_seconds"] == pytest.approx(0.5 * 0.251)
    handler({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, LambdaContext())
    (warm,) = rx.envelopes()[0]["ev"]
    assert warm["faas.billed_duration"] == 1
    assert warm["faas.cost.price_id"].startswith("aws-")
    assert warm["faas.cost.gb_seconds"] == pytest.approx(0.5 * 0.001)
    assert warm["faas.cost.usd"] == pytest.approx(0.2e-6 + 0.0005 * 0.0000166667)


def test_timeout_recorded_before_the_deadline(rx: Receiver) -> None:
    sh = make_shipper(rx, timeout_margin_ms=50)
    log = Logger("t", shipper=sh)
    release = threading.Event()
    results: list[str] = []

    @sh.instrument
    def handler(event: Any, context: Any) -> None:
        log.info("working")
        release.wait(10)
        results.append("returned")

    ctx = LambdaContext(remaining_ms=120)
    worker = threading.Thread(target=handler, args=({}, ctx))
    worker.start()
    frames: list[Any] = []

    def arrived() -> bool:
        frames.extend(rx.events())
        return bool(frames)

    poll_until(arrived, timeout=5, what="timeout record")
    release.set()
    worker.join(5)
    assert results == ["returned"]
    inv = by_type(frames, "inv")[0]
    assert inv["event.outcome"] == "failure"
    assert inv["error.type"] == "faaslens.Timeout"
    # Lambda timeouts are whole seconds: 120 ms left at the start is a 1 s limit, which
    # the platform bills in full although the record leaves 50 ms before it.
    assert inv["event.duration"] == 1_000_000_000
    assert [e["message"] for e in by_type(frames, "log")] == ["working"]
    assert rx.events() == []  # the handler's late return sends nothing more: one record
    assert sh.snapshot()["timeouts"] == 1


def test_counter_metric_carried_with_the_record(rx: Receiver) -> None:
    sh = make_shipper(rx)
    orders = Counter("orders", shipper=sh)

    @sh.instrument
    def handler() -> None:
        orders.inc()
        orders.inc(2)
        orders.inc(region="eu")

    handler()
    (inv,) = rx.events()
    assert inv["metrics"] == [
        {"name": "orders", "kind": "counter", "value": 3},
        {"name": "orders", "kind": "counter", "value": 1, "labels": {"region": "eu"}},
    ]


def test_watchdog_does_not_keep_finished_invocations(rx: Receiver) -> None:
    sh = make_shipper(rx)

    @sh.instrument
    def handler(event: Any, context: Any) -> None:
        return None

    for i in range(200):
        handler({}, LambdaContext(request_id=f"r-{i}", remaining_ms=900_000))
    assert len(rx.frames()) == 200
    assert len(sh._watchdog._queue) <= 1  # not 200 invocations held for 15 minutes


def test_module_level_api_follows_configure(rx: Receiver) -> None:
    import faaslens
    from faaslens.shipper import state

    previous = state.default
    other = Receiver()
    try:
        faaslens.configure(
            endpoint=rx.endpoint, service="api", environment="dev", start_events=False
        )

        @faaslens.instrument(name="ping")
        def handler() -> str:
            faaslens.set_label("k", "v")
            inv = faaslens.current_invocation()
            assert inv is not None
            return inv.execution_id

        exec_id = handler()
        (env,) = rx.envelopes()
        assert env["res"]["service.name"] == "api"
        assert env["ev"][0]["faas.execution"] == exec_id
        assert env["ev"][0]["labels"] == {"k": "v"}
        faaslens.configure(endpoint=other.endpoint)  # after decoration: followed
        handler()
        start, record = (e["ev"][0] for e in other.envelopes())  # start events are on by default
        assert (start["t"], record["t"]) == ("start", "inv") and rx.frames() == []
        assert faaslens.stats()["frames_sent"] == 2
    finally:
        state.default = previous
        other.close()


def test_thread_without_context_logs_outside(rx: Receiver) -> None:
    import contextvars

    sh = make_shipper(rx)
    log = Logger("t", shipper=sh)

    @sh.instrument
    def handler() -> None:
        plain = threading.Thread(target=log.info, args=("from a plain thread",))
        plain.start()
        plain.join()
        ctx = contextvars.copy_context()
        carried = threading.Thread(target=ctx.run, args=(log.info, "from a copied context"))
        carried.start()
        carried.join()

    handler()
    outside, record = rx.envelopes()
    assert outside["ev"][0]["message"] == "from a plain thread"
    assert "faas.execution" not in outside["ev"][0]
    assert [e["message"] for e in by_type(record["ev"], "log")] == ["from a copied context"]


def test_redelivered_ids_are_numbered_attempts(rx: Receiver) -> None:
    sh = make_shipper(rx)
    log = Logger("r", shipper=sh)

    outcomes = iter([True, True, False, False, False])

    @sh.instrument
    def handler(event: Any, context: Any) -> None:
        log.info("try")
        if next(outcomes):
            raise ConnectionError("retry me")

    for request_id in ("same-id", "same-id", "same-id", "other-id", "same-id"):
        with contextlib.suppress(ConnectionError):
            handler({}, LambdaContext(request_id=request_id))
    events = rx.events()
    records = by_type(events, "inv")
    # Platforms redeliver after a failure; a delivery after the id succeeded (an
    # at-least-once duplicate) is numbered too, so no two records share document ids.
    assert [(r["faas.execution"], r.get("faas.attempt", 1)) for r in records] == [
        ("same-id", 1),
        ("same-id", 2),
        ("same-id", 3),
        ("other-id", 1),
        ("same-id", 4),
    ]
    # The lines of each attempt carry it, so their documents do not collide.
    assert [e.get("faas.attempt", 1) for e in by_type(events, "log")] == [1, 2, 3, 1, 4]


def test_azure_retry_context_states_the_attempt(rx: Receiver) -> None:
    from faaslens.demo import AzureContext

    sh = make_shipper(rx)
    ctx = AzureContext("az-1", "Queue1")

    class Retry:
        retry_count = 2
        max_retry_count = 5

    ctx.retry_context = Retry()  # type: ignore[assignment]
    sh.instrument(lambda msg, context: None)(object(), ctx)
    (rec,) = by_type(rx.events(), "inv")
    assert rec["faas.attempt"] == 3

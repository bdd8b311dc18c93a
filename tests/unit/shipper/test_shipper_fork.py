"""A forked child is a new sender: its own id, sequence and counters, nothing of the parent's."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator

import pytest

import faaslens
from tests.unit.shipper.kit import Receiver, make_shipper, receivers


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def _fork_and_run(run: object) -> int:
    pid = os.fork()
    if pid == 0:  # the child: run, then leave without pytest's teardown
        code = 0
        try:
            run()  # type: ignore[operator]
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_child_gets_a_new_sender_and_fresh_state(rx: Receiver) -> None:
    sh = make_shipper(rx)

    @sh.instrument(name="job")
    def handler() -> None:
        sh.add_metric("counter", "orders", 1, None, None)

    handler()  # the parent: warm, seq 1
    sh.add_metric("counter", "pending", 5, None, None)  # waits for the parent's next record
    parent_stats = sh.snapshot()

    def child() -> None:
        assert sh.src != "test-src"
        assert sh.snapshot()["frames_sent"] == 0
        handler()
        handler()

    assert _fork_and_run(child) == 0
    handler()
    envs = rx.envelopes()
    by_src: dict[str, list[int]] = {}
    for env in envs:
        by_src.setdefault(env["src"], []).append(env["seq"])
    assert by_src.pop("test-src") == [1, 2]  # the parent's sequence has no gap or repeat
    ((child_src, child_seqs),) = by_src.items()
    assert child_seqs == [1, 2]  # a new sender starts at 1
    child_metrics = [
        ev.get("metrics") for env in envs if env["src"] == child_src for ev in env["ev"]
    ]
    # The parent's pending metric stays with the parent.
    assert all(m == [{"name": "orders", "kind": "counter", "value": 1}] for m in child_metrics)
    parent_last = next(env for env in envs if env["src"] == "test-src" and env["seq"] == 2)
    names = {m["name"] for m in parent_last["ev"][0]["metrics"]}
    assert names == {"orders", "pending"}
    assert sh.snapshot()["frames_sent"] == parent_stats["frames_sent"] + 1


def test_forked_before_any_invocation_keeps_the_cold_start(rx: Receiver) -> None:
    """gunicorn with a preloaded app: the worker's first invocation is the cold start, and
    its init began with the parent process."""
    sh = make_shipper(rx)

    @sh.instrument(name="job")
    def handler() -> None:
        pass

    from faaslens.shipper import state

    parent_age = state.init_age_ns()  # this test process's age: seconds, not the fork's ms
    assert _fork_and_run(handler) == 0
    (rec,) = [ev for env in rx.envelopes() for ev in env["ev"]]
    assert rec["faas.coldstart"] is True
    assert rec["faas.coldstart_duration"] >= parent_age


def pool_task(_: int) -> int:
    return os.getpid()


# Module-level, under its own name: what a pool pickles by reference.
pool_task = faaslens.instrument(name="pool-task")(pool_task)


def test_multiprocessing_fork_pool_children_send_as_themselves(rx: Receiver) -> None:
    from faaslens.shipper import state

    previous = state.default
    try:
        faaslens.configure(endpoint=rx.endpoint)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            pids = pool.map(pool_task, range(6))
        envs = rx.envelopes()
        assert sum(ev["t"] == "inv" for env in envs for ev in env["ev"]) == 6
        srcs = {env["src"] for env in envs}
        assert len(srcs) == len(set(pids))  # one sender per child process
        for src in srcs:
            seqs = [env["seq"] for env in envs if env["src"] == src]
            assert seqs == list(range(1, len(seqs) + 1))
    finally:
        state.default = previous

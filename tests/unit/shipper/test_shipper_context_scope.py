"""Context bound inside an invocation ends with it; context bound at import time stays;
structlog's bound contextvars appear on every line; configure_structlog composes."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from faaslens.shipper import state
from faaslens.shipper.logging_handler import LoggingHandler
from faaslens.shipper.logs import Logger, configure_structlog
from tests.unit.shipper.kit import Receiver, by_type, make_shipper, receivers


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


@pytest.fixture
def clean_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    previous = state.default
    try:
        yield
    finally:
        state.default = previous
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def _labels(rx: Receiver) -> dict[str, dict[str, Any]]:
    return {ev["message"]: ev.get("labels", {}) for ev in by_type(rx.events(), "log")}


def test_context_bound_in_an_invocation_ends_with_it(rx: Receiver, clean_structlog: None) -> None:
    sh = make_shipper(rx)
    state.default = sh
    configure_structlog()
    structlog.contextvars.bind_contextvars(deploy="blue")  # import time: stays
    slog = structlog.get_logger("sl")
    flog = Logger("fast", shipper=sh)
    std = logging.getLogger("std-scope")
    std.addHandler(LoggingHandler(shipper=sh))
    std.setLevel(logging.INFO)
    std.propagate = False

    @sh.instrument(name="f")
    def handler(first: bool) -> None:
        if first:
            structlog.contextvars.bind_contextvars(user="alice")
        slog.info(f"structlog {first}")
        flog.info(f"fast {first}")
        std.info(f"std {first}")

    handler(True)
    handler(False)
    labels = _labels(rx)
    for kind in ("structlog", "fast", "std"):
        assert labels[f"{kind} True"] == {"deploy": "blue", "user": "alice"}, kind
        assert labels[f"{kind} False"] == {"deploy": "blue"}, kind
    assert structlog.contextvars.get_contextvars() == {"deploy": "blue"}


def test_async_handler_context_ends_with_it(rx: Receiver, clean_structlog: None) -> None:
    sh = make_shipper(rx)
    flog = Logger("fast", shipper=sh)

    @sh.instrument(name="f")
    async def handler(first: bool) -> str:
        if first:
            structlog.contextvars.bind_contextvars(user="bob")
        flog.info(f"line {first}")
        return "done"

    async def main() -> None:
        assert await handler(True) == "done"
        assert await handler(False) == "done"

    asyncio.run(main())
    labels = _labels(rx)
    assert labels["line True"] == {"user": "bob"}
    assert labels["line False"] == {}


def test_with_block_context_ends_with_it(rx: Receiver, clean_structlog: None) -> None:
    sh = make_shipper(rx)
    flog = Logger("fast", shipper=sh)
    structlog.contextvars.bind_contextvars(region="eu")
    with sh.invocation(execution_id="w-1"):
        structlog.contextvars.bind_contextvars(user="carol", region="us")
        flog.info("inside")
    assert structlog.contextvars.get_contextvars() == {"region": "eu"}
    with sh.invocation(execution_id="w-2"):
        flog.info("next")
    labels = _labels(rx)
    assert labels["inside"] == {"user": "carol", "region": "us"}
    assert labels["next"] == {"region": "eu"}


def test_configure_structlog_keeps_the_applications_configuration(
    rx: Receiver, clean_structlog: None
) -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    sh = make_shipper(rx)
    state.default = sh
    configure_structlog()
    configure_structlog()  # idempotent
    structlog.contextvars.bind_contextvars(tenant="t1")
    log = structlog.get_logger()

    @sh.instrument(name="f")
    def handler() -> None:
        log.info("kept", n=1)
        log.debug("filtered by the application's level")

    handler()
    printed = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert printed == [{"n": 1, "tenant": "t1", "event": "kept", "level": "info"}]
    (line,) = by_type(rx.events(), "log")
    assert line["message"] == "kept" and line["labels"] == {"tenant": "t1", "n": 1}
    processors = structlog.get_config()["processors"]
    assert isinstance(processors[-1], structlog.processors.JSONRenderer)

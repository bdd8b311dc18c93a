"""Log lines: with the invocation, outside it, redaction, sampling, debug buffer, front ends."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from faaslens.shipper.core import Shipper
from faaslens.shipper.logging_handler import LoggingHandler
from faaslens.shipper.logs import Logger
from faaslens.shipper.processors import RedactKeys, add_invocation_context
from tests.unit.shipper.kit import FixedClock, Receiver, by_type, make_shipper, receivers


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def test_lines_go_with_their_invocation_in_order(rx: Receiver) -> None:
    sh = make_shipper(rx, clock=FixedClock())
    log = Logger("app", shipper=sh).bind(tenant="acme")

    @sh.instrument
    def handler() -> None:
        log.info("one", n=1)
        log.warning("two %s", "args")
        log.error("three")

    handler()
    events = rx.events()
    inv, *lines = events
    assert inv["t"] == "inv"
    assert [(e["event.sequence"], e["log.level"], e["message"]) for e in lines] == [
        (0, "info", "one"),
        (1, "warning", "two args"),
        (2, "error", "three"),
    ]
    assert all(e["faas.execution"] == inv["faas.execution"] for e in lines)
    assert lines[0]["labels"] == {"tenant": "acme", "n": 1}
    assert lines[0]["log.logger"] == "app"


def test_lines_outside_an_invocation_are_sent_on_their_own(rx: Receiver) -> None:
    sh = make_shipper(rx)
    log = Logger("init", shipper=sh)
    log.info("loading model", size=3)
    log.debug("below the level: not sent")
    log.warning("second")
    envs = rx.envelopes()
    assert len(envs) == 2
    first, second = (env["ev"][0] for env in envs)
    assert "faas.execution" not in first
    assert (first["event.sequence"], second["event.sequence"]) == (0, 1)
    assert first["labels"] == {"size": 3}
    assert [env["seq"] for env in envs] == [1, 2]


def test_exception_logged_with_error_fields(rx: Receiver) -> None:
    sh = make_shipper(rx)
    log = Logger(shipper=sh)

    @sh.instrument
    def handler() -> None:
        try:
            {"a": 1}["k"]
        except KeyError:
            log.exception("lookup failed")

    handler()
    line = by_type(rx.events(), "log")[0]
    assert line["log.level"] == "error"
    assert line["error.type"] == "KeyError"
    assert line["message"] == "lookup failed"
    assert len(line["error.grouping_key"]) == 16


def test_redaction_case_insensitive_and_nested(rx: Receiver) -> None:
    sh = make_shipper(rx)
    log = Logger(shipper=sh)

    @sh.instrument
    def handler() -> None:
        log.info(
            "login",
            Password="p",
            headers={"Authorization": "Bearer x", "X-Api-Key": "k", "accept": "json"},
            items=[{"access_token": "t"}],
            user="bob",
        )

    handler()
    labels = by_type(rx.events(), "log")[0]["labels"]
    assert labels == {
        "Password": "[REDACTED]",
        "headers": {"Authorization": "[REDACTED]", "X-Api-Key": "[REDACTED]", "accept": "json"},
        "items": [{"access_token": "[REDACTED]"}],
        "user": "bob",
    }


def test_redaction_configurable_and_labels_too(rx: Receiver) -> None:
    sh = make_shipper(rx, redact_keys="ssn, card")
    log = Logger(shipper=sh)

    @sh.instrument
    def handler() -> None:
        log.info("x", ssn="1", card_number="2", password="visible now")
        sh.add_metric("counter", "n", 1, None, None)

    with sh.invocation() as inv:
        inv.set_label("card", "4111")
    handler()
    first, second = rx.envelopes()
    assert first["ev"][0]["labels"] == {"card": "[REDACTED]"}
    labels = by_type(second["ev"], "log")[0]["labels"]
    assert labels == {"ssn": "[REDACTED]", "card_number": "[REDACTED]", "password": "visible now"}


def test_structlog_processors_usable_in_any_chain() -> None:
    redact = RedactKeys(["secret"])
    assert redact(None, "info", {"event": "e", "client_secret": "s", "d": {"Secret": 1}}) == {
        "event": "e",
        "client_secret": "[REDACTED]",
        "d": {"Secret": "[REDACTED]"},
    }
    rx = Receiver()
    try:
        sh = make_shipper(rx)
        with sh.invocation(execution_id="abc"):
            ed = add_invocation_context(None, "info", {"event": "x"})
        assert ed == {"event": "x", "faas.execution": "abc"}
        assert add_invocation_context(None, "info", {"event": "y"}) == {"event": "y"}
    finally:
        rx.close()


def _sampled(rate_draws: list[float], rx: Receiver, **settings: Any) -> Shipper:
    draws = iter(rate_draws)
    sh = make_shipper(rx, **settings)
    sh._sample = lambda: next(draws)
    return sh


def test_sampling_is_per_invocation(rx: Receiver) -> None:
    sh = _sampled([0.1, 0.9], rx, log_sample_rate=0.5)
    log = Logger(shipper=sh)

    @sh.instrument
    def handler() -> None:
        log.info("detail")
        log.warning("always")

    handler()  # draw 0.1 < 0.5: sampled, all lines
    assert [e["message"] for e in by_type(rx.events(), "log")] == ["detail", "always"]
    handler()  # draw 0.9: unsampled, warnings and up only
    assert [e["message"] for e in by_type(rx.events(), "log")] == ["always"]


def test_debug_buffer_shipped_only_on_failure(rx: Receiver) -> None:
    sh = make_shipper(rx, log_level="info", debug_buffer=2)
    log = Logger(shipper=sh)

    @sh.instrument
    def handler(fail: bool) -> None:
        log.debug("d1")
        log.info("i1")
        log.debug("d2")
        log.debug("d3")
        if fail:
            raise RuntimeError("x")

    handler(False)
    assert [e["message"] for e in by_type(rx.events(), "log")] == ["i1"]
    with pytest.raises(RuntimeError):
        handler(True)
    lines = by_type(rx.events(), "log")
    # the buffer keeps the latest 2 debug lines; order is the order of logging
    assert [(e["event.sequence"], e["message"]) for e in lines] == [(1, "i1"), (2, "d2"), (3, "d3")]
    assert sh.snapshot()["dropped_lines"] == 1


def test_stdlib_logging_handler(rx: Receiver) -> None:
    sh = make_shipper(rx)
    logger = logging.getLogger("faaslens.test.stdlib")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LoggingHandler(shipper=sh)
    logger.addHandler(handler)
    try:
        with sh.invocation(execution_id="std-1"):
            logger.info("hello %s", "world", extra={"order": 7})
            try:
                raise OSError("disk")
            except OSError:
                logger.exception("failed")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    first, second = rx.envelopes()
    lines = by_type(first["ev"], "log")
    assert [(e["message"], e["log.level"]) for e in lines] == [
        ("hello world", "info"),
        ("failed", "error"),
    ]
    assert lines[0]["labels"] == {"order": 7}
    assert lines[0]["log.logger"] == "faaslens.test.stdlib"
    assert lines[1]["error.type"] == "OSError"
    assert second["ev"][0]["message"] == "outside"
    assert "faas.execution" not in second["ev"][0]


def test_structlog_configured_to_ship(rx: Receiver) -> None:
    import structlog

    from faaslens.shipper import state
    from faaslens.shipper.logs import configure_structlog

    sh = make_shipper(rx)
    previous = state.default
    state.default = sh
    try:
        configure_structlog()
        log = structlog.get_logger("sl")
        with sh.invocation(execution_id="sl-1"):
            log.info("via structlog", k="v", api_key="x")
            log.debug("kept aside")
        (line,) = by_type(rx.events(), "log")
        assert line["message"] == "via structlog"
        assert line["labels"] == {"k": "v", "api_key": "[REDACTED]"}
        assert line["faas.execution"] == "sl-1"
    finally:
        state.default = previous
        structlog.reset_defaults()


def test_echo_prints_lines(rx: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    sh = make_shipper(rx, echo=True)
    log = Logger(shipper=sh)
    with sh.invocation(execution_id="e-1"):
        log.info("printed", token="t")
    out = capsys.readouterr().out
    assert '"message":"printed"' in out and '"token":"[REDACTED]"' in out
    assert '"faas.execution":"e-1"' in out


def test_import_does_not_load_structlog() -> None:
    code = (
        "import sys, faaslens\n"
        "log = faaslens.get_logger('x')\n"
        "c = faaslens.counter('c')\n"
        "@faaslens.instrument\n"
        "def h(e, c): log.info('x'); return 1\n"
        "h({}, None)\n"
        "print('structlog' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"FAASLENS_ENDPOINT": "udp://127.0.0.1:9", "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "False"


def test_debug_buffer_processor_in_a_structlog_chain(rx: Receiver) -> None:
    import structlog

    from faaslens.shipper.processors import DebugBuffer

    keep_aside = DebugBuffer()
    assert keep_aside(None, "debug", {"event": "outside"}) == {"event": "outside"}
    sh = make_shipper(rx)
    with pytest.raises(RuntimeError), sh.invocation(execution_id="chain-1") as inv:
        with pytest.raises(structlog.DropEvent):
            keep_aside(None, "debug", {"event": "cache miss", "key": "k1"})
        assert keep_aside(None, "info", {"event": "kept"}) == {"event": "kept"}
        assert inv.deferred is not None and len(inv.deferred) == 1
        raise RuntimeError("fails: the kept-aside line is shipped")
    (line,) = by_type(rx.events(), "log")
    assert (line["message"], line["log.level"], line["labels"]) == (
        "cache miss",
        "debug",
        {"key": "k1"},
    )

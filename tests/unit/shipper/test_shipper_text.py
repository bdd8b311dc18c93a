"""User text of any kind reaches the worker: encodable, cut on UTF-8 boundaries within the
byte limits, secrets redacted at every depth."""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest

from faaslens.ingest.validate import Validator
from faaslens.protocol import MARKER, UDP_MAX
from faaslens.shipper.logs import Logger
from faaslens.shipper.processors import TOO_DEEP, RedactKeys
from faaslens.shipper.wire import shrink_stack, truncate_bytes
from tests.unit.shipper.kit import Receiver, by_type, make_shipper, receivers

LONE = b"caf\xe9.csv".decode("utf-8", "surrogateescape")  # what os.listdir gives
HALF_EMOJI = "😀"[0:1].encode("utf-16", "surrogatepass")[2:4].decode("utf-16-le", "surrogatepass")
BAD_TEXTS = [LONE, "\ud800", "a\udfffb", HALF_EMOJI, "\udcff" * 3]


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def _valid(rx_frames: list[bytes]) -> list[dict[str, Any]]:
    """Every frame through the worker's own validator: nothing rejected."""
    validator = Validator()
    out: list[dict[str, Any]] = []
    for frame in rx_frames:
        result = validator.validate(frame)
        assert not result.rejected, result.rejected
        out.extend(result.invocations)
    return out


@pytest.mark.parametrize("bad", BAD_TEXTS)
def test_lone_surrogates_become_replacement_characters_everywhere(rx: Receiver, bad: str) -> None:
    sh = make_shipper(rx)
    log = Logger(bad, shipper=sh)

    @sh.instrument(name="f")
    def handler() -> str:
        log.info(f"reading {bad}", **{f"key{bad}": f"value{bad}", "nested": {bad: [bad]}})
        from faaslens.shipper import core

        core.set_label(f"label{bad}", bad)
        sh.add_metric("counter", "files", 1, {"name": bad}, None)
        raise OSError(f"cannot open {bad}")

    with pytest.raises(OSError):
        handler()
    assert sh.snapshot()["internal_errors"] == 0
    frames = rx.frames()
    (inv,) = _valid(frames)
    assert inv["event.outcome"] == "failure"
    assert "\ufffd" in inv["error.message"] and "\ufffd" in inv["error.stack_trace"]
    assert any("\ufffd" in k for k in inv["labels"])
    assert "\ufffd" in inv["metrics"][0]["labels"]["name"]
    import orjson

    (line,) = by_type([ev for f in frames for ev in orjson.loads(f)["ev"]], "log")
    assert "\ufffd" in line["message"] and "\ufffd" in line["log.logger"]
    assert any("\ufffd" in k for k in line["labels"])


@pytest.mark.parametrize("char", ["😀", "€", "é", "中"])
def test_long_line_over_udp_keeps_as_much_as_fits(rx: Receiver, char: str) -> None:
    sh = make_shipper(rx)

    @sh.instrument(name="f")
    def handler() -> None:
        Logger(shipper=sh).info(char * 40_000)

    handler()
    frames = rx.frames()
    assert all(len(f) <= UDP_MAX for f in frames)
    _valid(frames)
    import orjson

    (line,) = by_type([ev for f in frames for ev in orjson.loads(f)["ev"]], "log")
    text = line["message"]
    assert text.endswith(MARKER)
    kept = text[: -len(MARKER)]
    assert set(kept) == {char}
    # Close to the frame's byte budget, not to a character count.
    assert len(kept.encode()) > UDP_MAX - 2_000


def test_cjk_error_page_keeps_frames_and_exception_line(rx: Receiver) -> None:
    sh = make_shipper(rx)
    page = "错误页面" * 6_250  # 25,000 characters, 75,000 bytes

    def innermost() -> None:
        raise RuntimeError(page)

    # Two functions calling each other: frames Python does not fold into "repeated" lines.
    def ping(n: int) -> None:
        if n == 0:
            innermost()
        pong(n - 1)

    def pong(n: int) -> None:
        ping(n)

    @sh.instrument(name="f")
    def handler() -> None:
        ping(300)  # ~60 KB of frames: more than fits beside the message

    with pytest.raises(RuntimeError):
        handler()
    frames = rx.frames()
    assert all(len(f) <= UDP_MAX for f in frames)
    (inv,) = _valid(frames)
    stack = inv["error.stack_trace"]
    assert stack.startswith("Traceback (most recent call last):")
    assert "in innermost" in stack and "frames omitted]" in stack
    assert "RuntimeError: 错误页面" in stack
    assert inv["error.message"].startswith("错误页面")
    assert len(inv["error.message"]) > 1000


def test_truncate_bytes_never_splits_a_character() -> None:
    for text in ["😀" * 10, "aé" * 10, "中文" * 7]:
        for limit in range(14, 60):
            cut = truncate_bytes(text, limit)
            assert len(cut.encode()) <= limit
            assert cut == text or cut.endswith(MARKER)
            assert text.startswith(cut[: -len(MARKER)] if cut != text else cut)


def test_shrink_stack_keeps_innermost_frames() -> None:
    frames = "".join(f'  File "m.py", line {i}, in f{i}\n    call()\n' for i in range(200))
    text = "Traceback (most recent call last):\n" + frames + "ValueError: bad\n"
    out = shrink_stack(text, 1000)
    assert len(out) <= 1000
    assert out.startswith("Traceback") and out.endswith("ValueError: bad\n")
    assert "in f199" in out and "in f0\n" not in out and "frames omitted]" in out


SECRETS: list[tuple[str, Any]] = [
    ("request", {"headers": {"auth": {"Authorization": "Bearer x-secret"}}}),
    ("batches", [[{"api_key": "k-secret"}]]),
    ("deep", {"a": {"b": {"c": {"d": {"e": {"password": "p-secret"}}}}}}),
    ("tupled", ({"x": ({"token": "t-secret"},)},)),
    ("proxy", MappingProxyType({"inner": {"cookie": "c-secret"}})),
    ("listed", [{"a": [{"b": [{"secret": "s-secret"}]}]}]),
]


@pytest.mark.parametrize(("key", "value"), SECRETS)
def test_redacted_at_every_depth(rx: Receiver, key: str, value: Any) -> None:
    sh = make_shipper(rx)

    @sh.instrument(name="f")
    def handler() -> None:
        Logger(shipper=sh).info("req", **{key: value})

    handler()
    frames = rx.frames()
    _valid(frames)
    assert b"-secret" not in b"".join(frames)
    assert b"[REDACTED]" in b"".join(frames)


def test_past_the_depth_budget_a_value_is_a_marker() -> None:
    value: Any = {"password": "p-secret"}
    for _ in range(100):
        value = {"n": value}
    out = RedactKeys(["password"])(None, "info", {"v": value})
    text = repr(out)
    assert "p-secret" not in text and TOO_DEEP in text


def test_huge_label_value_is_cut_not_the_labels_dropped(rx: Receiver) -> None:
    sh = make_shipper(rx)

    @sh.instrument(name="f")
    def handler() -> None:
        Logger(shipper=sh).info("upload", name="report.csv", body="中" * 40_000)

    handler()
    frames = rx.frames()
    assert all(len(f) <= UDP_MAX for f in frames)
    _valid(frames)
    import orjson

    (line,) = by_type([ev for f in frames for ev in orjson.loads(f)["ev"]], "log")
    assert line["labels"]["name"] == "report.csv"
    assert line["labels"]["body"].endswith(MARKER) and len(line["labels"]["body"]) > 15_000


def test_metric_labels_are_redacted(rx: Receiver) -> None:
    from faaslens.shipper.metrics import Counter

    sh = make_shipper(rx)
    with sh.invocation():
        Counter("calls", shipper=sh).inc(api_key="k-secret", region="eu")
    (inv,) = rx.events()
    assert inv["metrics"][0]["labels"] == {"api_key": "[REDACTED]", "region": "eu"}


def test_empty_platform_id_gets_a_generated_one(rx: Receiver) -> None:
    from tests.unit.shipper.kit import LambdaContext

    sh = make_shipper(rx)
    sh.instrument(lambda event, context: None)({}, LambdaContext(request_id=""))
    (frame,) = rx.frames()
    (inv,) = _valid([frame])
    assert inv["faas.execution"]

"""Property-based: whatever a user passes, the invocation's record arrives whole (its
required fields, within the size limits, accepted by the worker's validator), secrets are
redacted at every depth, and the handler's own result is untouched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faaslens.ingest.validate import INV_REQUIRED, Validator
from faaslens.protocol import UDP_MAX
from faaslens.shipper.logs import Logger
from faaslens.shipper.metrics import Counter, Histogram
from tests.unit.shipper.kit import LambdaContext, Receiver, make_shipper

SECRET = "s3cr3t-Vq7"  # a value that must never leave the function

# Any code point, lone surrogates included (what surrogateescape decoding produces).
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=60),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["😀", "中", "é", "\udce9", "x"]),
              st.integers(0, 70_000)),
)  # fmt: skip


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Weird:
    """An object orjson cannot encode whose str() is user text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


SCALARS = st.one_of(
    TEXT,
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.builds(Unprintable),
    st.builds(Weird, TEXT),
    st.binary(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(TEXT, st.integers()), inner, max_size=4),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=12,
)


def _bury(secret_key: str, depth: int, in_list: bool) -> Any:
    value: Any = {secret_key: SECRET}
    for i in range(depth):
        value = [value] if in_list and i % 2 else {"level": value}
    return value


@pytest.fixture(scope="module")
def rx() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    message=st.one_of(TEXT, SCALARS),
    kv=st.dictionaries(st.one_of(TEXT, st.integers()), VALUES, max_size=5),
    logger_name=st.one_of(TEXT, st.integers(), st.none()),
    label=st.tuples(TEXT, VALUES),
    metric_label=TEXT,
    error=st.one_of(st.none(), TEXT),
    secret_key=st.sampled_from(["password", "Authorization", "x-api-key", "db_token"]),
    depth=st.integers(0, 45),
    in_list=st.booleans(),
)
def test_any_user_input_gives_one_whole_record(  # noqa: PLR0917 - hypothesis passes them
    rx: Receiver,
    message: Any,
    kv: dict[Any, Any],
    logger_name: Any,
    label: tuple[str, Any],
    metric_label: str,
    error: str | None,
    secret_key: str,
    depth: int,
    in_list: bool,
) -> None:
    rx.frames()  # nothing left from an earlier example
    sh = make_shipper(rx)
    log = Logger(logger_name, shipper=sh)
    counter = Counter("things", shipper=sh)
    hist = Histogram("sizes", shipper=sh)
    result = object()

    @sh.instrument
    def handler(event: Any, context: Any) -> object:
        log.info(
            message,
            *(),
            **{str(k): v for k, v in kv.items()},
            secret=_bury(secret_key, depth, in_list),
        )
        log.warning("with %s", message)
        sh.add_metric("gauge", "g", 1.0, {"name": metric_label[:64]}, None)
        counter.inc(1, name=metric_label)
        hist.observe(len(metric_label))
        from faaslens.shipper import core

        core.set_label(*label)
        if error is not None:
            raise ValueError(error)
        return result

    ctx = LambdaContext(request_id="prop-1")
    if error is None:
        assert handler({"headers": {"authorization": SECRET}}, ctx) is result
    else:
        with pytest.raises(ValueError) as caught:
            handler({}, ctx)
        assert caught.value.args == (error,)  # the handler's exception untouched
    frames = rx.frames()
    assert frames and all(len(f) <= UDP_MAX for f in frames)
    assert SECRET.encode() not in b"".join(frames)
    validator = Validator()
    records = []
    for frame in frames:
        checked = validator.validate(frame)
        assert checked.rejected is None
        assert checked.event_rejections == []
        records += checked.invocations
    (record,) = records
    assert all(key in record for key in INV_REQUIRED)
    assert record["faas.execution"] == "prop-1"
    assert record["event.outcome"] == ("success" if error is None else "failure")
    assert sh.snapshot()["internal_errors"] == 0
    lines = [ev for f in frames for ev in orjson.loads(f)["ev"] if ev["t"] == "log"]
    assert len(lines) == 2

"""An HTTP function that answers 5xx without raising is a failure, as the platforms count it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import azure.functions as func
import flask
import pytest

from faaslens.ingest.validate import Validator
from tests.unit.shipper.kit import LambdaContext, Receiver, make_shipper, receivers

app = flask.Flask(__name__)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def _answers() -> list[tuple[str, Any, int | None]]:
    with app.app_context():
        return [
            ("aws proxy 500", {"statusCode": 500, "body": "{}"}, 500),
            ("aws proxy 503 as text", {"statusCode": "503"}, 503),
            ("aws proxy 201", {"statusCode": 201}, 201),
            ("flask tuple", (flask.jsonify(error="x"), 500), 500),
            ("flask tuple with headers", ("oops", 502, {"X": "1"}), 502),
            ("flask status text", ("oops", "504 GATEWAY TIMEOUT"), 504),
            ("flask response", flask.Response("down", status=503), 503),
            ("flask (response, headers)", (flask.Response("x", status=500), {"X": "1"}), 500),
            ("azure", func.HttpResponse("no", status_code=500), 500),
            ("azure ok", func.HttpResponse("yes"), 200),
            ("plain string", "hi", None),
            ("plain dict", {"ok": True}, None),
            ("none", None, None),
        ]


@pytest.mark.parametrize(("what", "answer", "status"), _answers(), ids=lambda v: str(v)[:30])
def test_status_and_outcome(rx: Receiver, what: str, answer: Any, status: int | None) -> None:
    sh = make_shipper(rx)

    @sh.instrument(name="api", trigger="http")
    def handler(event: Any, context: Any) -> Any:
        return answer

    assert handler({"requestContext": {}}, LambdaContext()) is answer  # untouched
    frames = rx.frames()
    result = Validator().validate(frames[0])
    assert not result.rejected
    (inv,) = result.invocations
    assert inv.get("http.response.status_code") == status
    failed = status is not None and status >= 500
    assert inv["event.outcome"] == ("failure" if failed else "success")
    assert "error.type" not in inv


@pytest.mark.parametrize(
    ("setting", "outcome"), [(0, "success"), (400, "failure"), (501, "success")]
)
def test_failure_status_is_configurable(rx: Receiver, setting: int, outcome: str) -> None:
    sh = make_shipper(rx, http_failure_status=setting)

    @sh.instrument(name="api", trigger="http")
    def handler() -> Any:
        return {"statusCode": 500 if setting != 400 else 404}

    handler()
    (env,) = rx.envelopes()
    assert env["ev"][0]["event.outcome"] == outcome

"""Records from handlers called with the azure-functions library's own types (the Python
worker passes these): an implementation of its abstract Context, real HttpRequest,
HttpResponse, QueueMessage and TimerRequest objects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions import _abc
from azure.functions.timer import TimerRequest

from tests.unit.shipper.kit import Receiver, by_type, make_shipper, receivers

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class TraceContext(_abc.TraceContext):
    def __init__(self) -> None:
        self._tp = TRACEPARENT

    @property
    def trace_parent(self) -> str:
        return self._tp

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class RetryContext(_abc.RetryContext):
    def __init__(self, count: int) -> None:
        self._count = count

    @property
    def retry_count(self) -> int:
        return self._count

    @property
    def max_retry_count(self) -> int:
        return 5

    @property
    def exception(self) -> Any:
        return None


class Context(func.Context):
    """The host's context, as the abstract class in azure.functions defines it."""

    def __init__(self, invocation_id: str, function_name: str, retries: int = 0) -> None:
        self._id = invocation_id
        self._name = function_name
        self._retries = retries

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return threading.local

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return f"/home/site/wwwroot/{self._name}"

    @property
    def trace_context(self) -> TraceContext:
        return TraceContext()

    @property
    def retry_context(self) -> RetryContext:
        return RetryContext(self._retries)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


AZURE_ENV = {"FUNCTIONS_WORKER_RUNTIME": "python", "WEBSITE_SITE_NAME": "shop-app"}


def test_http_trigger_with_the_library_types(rx: Receiver) -> None:
    sh = make_shipper(rx, environ=AZURE_ENV)

    @sh.instrument
    def hello(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        if req.params.get("fail"):
            return func.HttpResponse("down", status_code=503)
        return func.HttpResponse("hi")

    ok = func.HttpRequest("GET", "https://shop-app.azurewebsites.net/api/hello", body=b"")
    bad = func.HttpRequest(
        "GET", "https://shop-app.azurewebsites.net/api/hello", body=b"", params={"fail": "1"}
    )
    assert hello(ok, Context("az-ok", "hello")).get_body() == b"hi"
    assert hello(bad, Context("az-bad", "hello", retries=1)).status_code == 503
    first, second = by_type(rx.events(), "inv")
    assert first["faas.execution"] == "az-ok" and first["faas.name"] == "shop-app/hello"
    assert first["faas.trigger.type"] == "http" and first["trace.id"] == TRACEPARENT[3:35]
    assert (first["event.outcome"], first["http.response.status_code"]) == ("success", 200)
    assert (second["event.outcome"], second["http.response.status_code"]) == ("failure", 503)
    assert second["faas.attempt"] == 2  # retry_count 1: the second attempt


@pytest.mark.parametrize(
    ("binding", "trigger"),
    [
        (func.QueueMessage(id="m-1", body=b"{}"), "pubsub"),
        (TimerRequest(past_due=False), "timer"),
    ],
)
def test_other_triggers_from_the_binding_type(rx: Receiver, binding: Any, trigger: str) -> None:
    sh = make_shipper(rx, environ=AZURE_ENV)
    sh.instrument(lambda msg, context: None)(binding, Context("az-1", "job"))
    (rec,) = by_type(rx.events(), "inv")
    assert rec["faas.trigger.type"] == trigger and rec["faas.execution"] == "az-1"

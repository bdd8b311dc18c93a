"""Provider detection and per-invocation facts from each platform's documented shapes."""

from __future__ import annotations

from typing import Any

import pytest

from faaslens.demo import AzureContext
from faaslens.shipper.config import ShipperConfig
from faaslens.shipper.context import (
    detect_provider,
    extract,
    new_execution_id,
    parse_cloud_trace,
    parse_traceparent,
    parse_xray,
    resource_from_env,
)
from tests.unit.shipper.kit import (
    BackgroundContext,
    CloudEvent,
    FlaskRequest,
    HttpRequest,
    LambdaContext,
    TimerRequest,
)

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent() -> None:
    assert parse_traceparent(TP) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert parse_traceparent("00-" + "0" * 32 + "-b7ad6b7169203331-01") is None
    assert parse_traceparent("garbage") is None
    assert parse_traceparent(None) is None
    assert parse_traceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") is None


def test_xray_and_cloud_trace() -> None:
    assert parse_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8") == (
        "5759e988bd862e3fe1be46a994272793",
        "53995c3f42cd8ad8",
    )
    assert parse_xray("Root=1-5759e988-bd862e3fe1be46a994272793") == (
        "5759e988bd862e3fe1be46a994272793",
        None,
    )
    assert parse_xray("Sampled=1") is None
    assert parse_cloud_trace("105445aa7843bc8bf206b12000100000/1;o=1") == (
        "105445aa7843bc8bf206b12000100000",
        "0000000000000001",
    )
    assert parse_cloud_trace("nothex/1") is None


def test_new_execution_id_is_a_uuid4() -> None:
    import uuid

    value = new_execution_id()
    assert uuid.UUID(value).version == 4
    assert value != new_execution_id()


@pytest.mark.parametrize(
    ("event", "trigger"),
    [
        ({"requestContext": {"http": {"method": "GET"}}, "headers": {}}, "http"),
        ({"httpMethod": "POST", "headers": {"traceparent": TP}}, "http"),
        ({"Records": [{"eventSource": "aws:sqs"}]}, "pubsub"),
        ({"Records": [{"EventSource": "aws:sns"}]}, "pubsub"),
        ({"Records": [{"eventSource": "aws:s3"}]}, "datasource"),
        ({"Records": [{"eventSource": "aws:dynamodb"}]}, "datasource"),
        ({"source": "aws.events", "detail-type": "Scheduled Event"}, "timer"),
        ({"source": "my.app", "detail-type": "OrderPlaced"}, "pubsub"),
        ({"anything": 1}, "other"),
        ("not a dict", "other"),
    ],
)
def test_aws_triggers(event: Any, trigger: str) -> None:
    info = extract((event, LambdaContext()), {}, {})
    assert info.trigger == trigger
    assert info.execution_id == "c6af9ac6-7b61-11e6-9a41-93e812345678"
    assert info.remaining_ms is not None and info.remaining_ms() == 3000


def test_aws_trace_from_headers_wins_over_xray() -> None:
    env = {"_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"}
    info = extract(
        ({"headers": {"Traceparent": TP}, "httpMethod": "GET"}, LambdaContext()), {}, env
    )
    assert info.trace_id == "0af7651916cd43dd8448eb211c80319c"
    info = extract(({}, LambdaContext()), {}, env)
    assert info.trace_id == "5759e988bd862e3fe1be46a994272793"
    assert info.fields is not None
    assert info.fields["cloud.region"] == "eu-west-1"
    assert info.fields["faas.max_memory"] == 512 * 1024 * 1024


def test_azure_context_and_bindings() -> None:
    ctx = AzureContext("5f0a4b0e-1111-4e1e-9d1e-000000000001", "HttpTrigger1", TP)
    info = extract((HttpRequest(), ctx), {}, {"WEBSITE_SITE_NAME": "shop-func"})
    assert info.execution_id == "5f0a4b0e-1111-4e1e-9d1e-000000000001"
    assert info.trigger == "http"
    assert info.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert info.fields == {"cloud.provider": "azure", "faas.name": "shop-func/HttpTrigger1"}
    timer = extract((TimerRequest(),), {"context": AzureContext("id-2", "Nightly")}, {})
    assert timer.trigger == "timer"
    assert timer.execution_id == "id-2"
    assert timer.trace_id is None


def test_gcp_http_flask_request() -> None:
    headers = {
        "function-execution-id": "abc123xyz",
        "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/2;o=1",
    }
    info = extract((FlaskRequest(headers),), {}, {})
    assert info.execution_id == "abc123xyz"
    assert info.trigger == "http"
    assert info.trace_id == "105445aa7843bc8bf206b12000100000"
    assert info.span_id == "0000000000000002"
    info = extract((FlaskRequest({"traceparent": TP}),), {}, {})
    assert info.execution_id is None  # the shipper makes one up
    assert info.trace_id == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    ("ce_type", "trigger"),
    [
        ("google.cloud.pubsub.topic.v1.messagePublished", "pubsub"),
        ("google.cloud.storage.object.v1.finalized", "datasource"),
        ("google.cloud.firestore.document.v1.written", "datasource"),
        ("google.cloud.audit.log.v1.written", "other"),
    ],
)
def test_gcp_cloudevent(ce_type: str, trigger: str) -> None:
    ce = CloudEvent({"id": "1234567890", "type": ce_type, "source": "//pubsub", "traceparent": TP})
    info = extract((ce,), {}, {})
    assert info.execution_id == "1234567890"
    assert info.trigger == trigger
    assert info.trace_id == "0af7651916cd43dd8448eb211c80319c"


def test_gcp_background_function() -> None:
    info = extract(
        ({"data": "x"}, BackgroundContext("evt-9", "google.pubsub.topic.publish")), {}, {}
    )
    assert info.execution_id == "evt-9"
    assert info.trigger == "pubsub"


def test_plain_call_gives_nothing() -> None:
    info = extract((1, "two"), {"three": 3}, {})
    assert info.execution_id is None and info.trigger is None and info.fields is None


@pytest.mark.parametrize(
    ("env", "provider"),
    [
        ({"AWS_LAMBDA_FUNCTION_NAME": "f"}, "aws"),
        ({"FUNCTIONS_WORKER_RUNTIME": "python"}, "azure"),
        ({"FUNCTION_TARGET": "hello", "K_SERVICE": "hello"}, "gcp"),
        ({}, "local"),
    ],
)
def test_detect_provider(env: dict[str, str], provider: str) -> None:
    assert detect_provider(env) == provider


def test_resource_blocks() -> None:
    aws = resource_from_env(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "checkout",
            "AWS_LAMBDA_FUNCTION_VERSION": "7",
            "AWS_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_LOG_STREAM_NAME": "stream-1",
        },
        ShipperConfig(environment="prod"),
    )
    assert aws["cloud.provider"] == "aws"
    assert aws["faas.name"] == aws["service.name"] == "checkout"
    assert aws["faas.version"] == "7"
    assert aws["cloud.region"] == "us-east-1"
    assert aws["faas.max_memory"] == 1024 * 1024 * 1024
    assert aws["service.node.name"] == "stream-1"
    assert aws["service.environment"] == "prod"
    azure = resource_from_env(
        {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "WEBSITE_SITE_NAME": "shop",
            "REGION_NAME": "West Europe",
            "WEBSITE_OWNER_NAME": "sub-123+rg-WestEuropewebspace",
        },
        ShipperConfig(),
    )
    assert azure["cloud.region"] == "westeurope"
    assert azure["cloud.account.id"] == "sub-123"
    gcp = resource_from_env(
        {
            "K_SERVICE": "hello",
            "K_REVISION": "hello-00002",
            "FUNCTION_TARGET": "hello",
            "GOOGLE_CLOUD_PROJECT": "proj",
        },
        ShipperConfig(region="europe-west1", memory_mb=256, service="api"),
    )
    assert gcp["faas.name"] == "hello" and gcp["faas.version"] == "hello-00002"
    assert gcp["service.name"] == "api"
    assert gcp["cloud.region"] == "europe-west1"
    assert gcp["faas.max_memory"] == 256 * 1024 * 1024


def test_every_platform_id_is_cut_to_the_protocol_limit() -> None:
    """An id over ``MAX_EXECUTION_ID`` characters would be rejected by the worker: each
    platform's is cut to it."""
    from faaslens.protocol import MAX_EXECUTION_ID

    long_id = "i" * (MAX_EXECUTION_ID + 50)
    calls: list[tuple[tuple[object, ...], dict[str, object]]] = [
        (({}, LambdaContext(request_id=long_id)), {}),
        ((HttpRequest(),), {"context": AzureContext(long_id, "Hello")}),
        ((FlaskRequest({"Function-Execution-Id": long_id}),), {}),
        ((CloudEvent({"id": long_id, "type": "x", "source": "//s"}),), {}),
        (({}, BackgroundContext(long_id, "google.pubsub.topic.publish")), {}),
    ]
    for args, kwargs in calls:
        assert extract(args, kwargs, {}).execution_id == long_id[:MAX_EXECUTION_ID], args

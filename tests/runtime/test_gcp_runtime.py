"""Records of functions served by functions-framework (HTTP and CloudEvent signatures)."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from tests.runtimes import GcpRuntime, Receiver

HTTP_APP = """
import faaslens

log = faaslens.get_logger("app")

@faaslens.instrument
def hello(request):
    log.info("hello", path=request.path)
    return "hi"
"""

EVENT_APP = """
import faaslens

@faaslens.instrument
def on_message(cloud_event):
    faaslens.get_logger().info("got", id=cloud_event["id"])
"""


def test_http_function_record(
    gcp_runtime: Callable[..., GcpRuntime], udp_receiver: Receiver
) -> None:
    fn = gcp_runtime(
        HTTP_APP, target="hello", signature="http", env={"FAASLENS_ENDPOINT": udp_receiver.endpoint}
    )
    assert fn.post("/", b"", {"Function-Execution-Id": "gcp-exec-1"}) == (200, b"hi")
    assert fn.post("/", b"", {"Function-Execution-Id": "gcp-exec-2"}) == (200, b"hi")
    first, second = udp_receiver.wait_records(2)
    assert (first["faas.execution"], second["faas.execution"]) == ("gcp-exec-1", "gcp-exec-2")
    assert first["cloud.provider"] == "gcp" and first["faas.trigger.type"] == "http"
    assert (first["faas.coldstart"], second["faas.coldstart"]) == (True, False)
    assert first["event.outcome"] == "success"


def test_cloudevent_function_record(
    gcp_runtime: Callable[..., GcpRuntime], udp_receiver: Receiver
) -> None:
    fn = gcp_runtime(
        EVENT_APP,
        target="on_message",
        signature="cloudevent",
        env={"FAASLENS_ENDPOINT": udp_receiver.endpoint},
    )
    event = {
        "specversion": "1.0",
        "id": "ce-123",
        "source": "//pubsub.googleapis.com/projects/p/topics/t",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "data": {"message": {"data": "aGk="}},
    }
    status, _ = fn.post("/", orjson.dumps(event), {"Content-Type": "application/cloudevents+json"})
    assert status == 200
    (rec,) = udp_receiver.wait_records(1)
    assert rec["faas.execution"] == "ce-123"
    assert rec["faas.trigger.type"] == "pubsub"
    (line,) = [ev for ev in udp_receiver.events() if ev.get("t") == "log"]
    assert line["labels"] == {"id": "ce-123"} and line["faas.execution"] == "ce-123"


SLOW_IMPORT_APP = """
import time
import faaslens

time.sleep(1.0)  # workload, not a wait: a module that takes a second to import

@faaslens.instrument
def hello(request):
    return "hi"
"""


def test_cold_start_counts_from_the_process_start_not_the_workers_fork(
    gcp_runtime: Callable[..., GcpRuntime], udp_receiver: Receiver
) -> None:
    fn = gcp_runtime(
        SLOW_IMPORT_APP,
        target="hello",
        signature="http",
        env={"FAASLENS_ENDPOINT": udp_receiver.endpoint},
    )
    assert fn.post("/", b"", {"Function-Execution-Id": "e-1"}) == (200, b"hi")
    (rec,) = udp_receiver.wait_records(1)
    assert rec["faas.coldstart"] is True
    # At least the import's second; at most the whole time the runtime took to come up.
    assert 1_000_000_000 <= rec["faas.coldstart_duration"] <= 30_000_000_000


ERROR_PAGE_APP = """
import faaslens
from flask import jsonify

@faaslens.instrument
def hello(request):
    if request.args.get("fail"):
        return jsonify(error="upstream down"), 500
    return jsonify(ok=True)
"""


def test_a_5xx_answer_is_a_failure(
    gcp_runtime: Callable[..., GcpRuntime], udp_receiver: Receiver
) -> None:
    fn = gcp_runtime(
        ERROR_PAGE_APP,
        target="hello",
        signature="http",
        env={"FAASLENS_ENDPOINT": udp_receiver.endpoint},
    )
    assert fn.post("/?fail=1", b"", {"Function-Execution-Id": "bad"})[0] == 500
    assert fn.post("/", b"", {"Function-Execution-Id": "good"})[0] == 200
    bad, good = udp_receiver.wait_records(2)
    assert (bad["event.outcome"], bad["http.response.status_code"]) == ("failure", 500)
    assert (good["event.outcome"], good["http.response.status_code"]) == ("success", 200)


def test_preforked_workers_send_as_distinct_senders(
    gcp_runtime: Callable[..., GcpRuntime], udp_receiver: Receiver
) -> None:
    """gunicorn forks its workers after the module (and its shipper) was loaded: each
    worker must be a sender of its own, or the worker's loss accounting misfires."""
    from concurrent.futures import ThreadPoolExecutor

    fn = gcp_runtime(
        HTTP_APP,
        target="hello",
        signature="http",
        env={"FAASLENS_ENDPOINT": udp_receiver.endpoint, "WORKERS": "3", "THREADS": "1"},
    )
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda i: fn.post("/", b"", {"Function-Execution-Id": f"p-{i}"}), range(24))
        )
    assert all(status == 200 for status, _ in answers)
    udp_receiver.wait_records(24)
    seen = [(env["src"], env["seq"]) for env in udp_receiver.envelopes]
    assert len(seen) == len(set(seen))  # no sequence number sent twice by one sender id
    for src in {s for s, _ in seen}:
        seqs = sorted(q for s, q in seen if s == src)
        assert seqs == list(range(1, len(seqs) + 1))

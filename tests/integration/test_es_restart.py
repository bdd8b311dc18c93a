"""A real Elasticsearch stopped mid-stream and started again: every document
lands exactly once.

The shared test server must not be stopped, so this test runs a second node of
its own through ``scripts/stack`` (its own state directory and port). The node
reuses an unpacked distribution when one is at hand (the one the test server
runs from, or the local stack's), else ``scripts/stack`` unpacks its cached zip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from devkit.stack import run_stack
from faaslens.ingest.aio import wait_event
from faaslens.ingest.config import IngestConfig
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.sink import ElasticsearchSink
from tests.integration.test_es_sink import make_docs, metric, refresh_and_count
from tests.support import apoll_until, http_json

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ES_VERSION = "8.19.21"


def _free_port_pair() -> int:
    """A port p with p and p + 100 (the node's transport port) both free."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + 100 > 65535:
            continue
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port + 100))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def _existing_home(es_url: str) -> Path | None:
    """An unpacked distribution on this machine: the test server's, or the local stack's."""
    candidates = []
    status, body = http_json(
        "GET", f"{es_url}/_nodes/_local/settings?filter_path=nodes.*.settings.path.home"
    )
    if status == 200 and isinstance(body, dict):
        for node in body.get("nodes", {}).values():
            candidates.append(Path(node["settings"]["path"]["home"]))
    stack_dir = Path(os.environ.get("FAASLENS_STACK_DIR") or REPO / ".stack")
    candidates.append(stack_dir / "es" / f"elasticsearch-{ES_VERSION}")
    for home in candidates:
        if (home / "bin" / "elasticsearch").is_file() and ES_VERSION in home.name:
            return home
    return None


class Node:
    """A second Elasticsearch node managed by ``scripts/stack``."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            "FAASLENS_STACK_DIR": str(state_dir),
            "FAASLENS_ES_PORT": str(port),
            "FAASLENS_ES_HEAP": "256m",
        }

    def _stack(self, action: str) -> None:
        run_stack(action, "es", self.env)

    def up(self) -> None:
        self._stack("up")

    def down(self) -> None:
        self._stack("down")


@pytest.fixture
def node(es_url: str) -> Iterator[Node]:
    # Under /tmp and world-traversable: the node runs as its own user.
    state = Path(tempfile.mkdtemp(prefix="faaslens-es-restart-"))
    state.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    home = _existing_home(es_url)
    if home is not None:
        (state / "es").mkdir()
        (state / "es" / home.name).symlink_to(home)
    instance = Node(state, _free_port_pair())
    instance.up()
    try:
        yield instance
    finally:
        instance.down()
        shutil.rmtree(state, ignore_errors=True)


async def test_es_stopped_mid_stream_and_restarted_loses_and_duplicates_nothing(
    node: Node, tmp_path: Path
) -> None:
    prefix = "t" + uuid.uuid4().hex[:8]
    config = IngestConfig(
        es_url=node.url,
        es_index_prefix=prefix,
        spool_dir=str(tmp_path / "spool"),
        dead_letter_path=str(tmp_path / "dead.ndjson"),
        retry_base_s=0.05,
        retry_max_s=1.0,
        es_request_timeout_s=10.0,
    )
    sink = ElasticsearchSink(config, CollectorRegistry(), retry_window_s=1.0)
    await sink.start()
    assert sink.ready
    sent: list[Doc] = []
    stop_writing = asyncio.Event()

    async def writer() -> None:
        # Traffic keeps flowing whatever Elasticsearch does.
        while not stop_writing.is_set():
            batch = make_docs(20, logs=2)
            await sink.write(batch)
            sent.extend(batch)
            # Paced traffic: the next batch 20 ms later, unless told to stop first.
            await wait_event(stop_writing, 0.02)

    try:
        task = asyncio.create_task(writer())

        async def some_indexed() -> bool:
            return metric(sink, "faaslens_docs_indexed_total", index_kind="logs") > 200

        await apoll_until(some_indexed, timeout=60, what="traffic indexed")
        await asyncio.to_thread(node.down)  # stopped mid-stream

        async def spooling() -> bool:
            return metric(sink, "faaslens_docs_spooled_total") > 300

        await apoll_until(spooling, timeout=60, what="writes spooled while down")
        assert metric(sink, "faaslens_es_up") == 0
        await asyncio.to_thread(node.up)

        async def replayed() -> bool:
            return sink.ready and metric(sink, "faaslens_spool_bytes") == 0

        await apoll_until(replayed, timeout=120, what="spool replayed after restart")
        stop_writing.set()
        await task
        await apoll_until(replayed, timeout=60, what="spool empty at the end")
    finally:
        stop_writing.set()
        await sink.close()

    expected = {(d.kind, d.doc_id) for d in sent}
    assert len(expected) == len(sent)
    assert refresh_and_count(node.url, prefix) == len(sent)
    indexed = sum(
        metric(sink, "faaslens_docs_indexed_total", index_kind=k)
        for k in ("invocations", "logs", "errors")
    )
    # A bulk cut by the stop may have landed before the connection broke: its
    # re-send answers 409, so each document is counted once, as indexed or duplicate.
    assert indexed <= len(sent)
    assert indexed + metric(sink, "faaslens_docs_duplicate_total") >= len(sent)
    assert metric(sink, "faaslens_docs_failed_total", reason="spool_full") == 0
    assert metric(sink, "faaslens_dead_letter_total") == 0
    assert metric(sink, "faaslens_docs_replayed_total") == metric(
        sink, "faaslens_docs_spooled_total"
    )

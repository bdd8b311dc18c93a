"""The loss ledger counts from Elasticsearch: true across workers, restarts and late frames."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from faaslens.ingest.config import IngestConfig
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.sink import ElasticsearchSink
from faaslens.ingest.validate import Validator
from faaslens.query.cli import main as query_main
from faaslens.query.client import QueryClient
from tests.integration.test_es_sink import frame, invocation_events

pytestmark = pytest.mark.integration


def frames_of(src: str, seqs: list[int], start_ms: int) -> dict[int, list[Doc]]:
    """The documents of each frame (one invocation with a log line), by sequence number."""
    validator = Validator()
    out = {}
    for seq in seqs:
        events = invocation_events(uuid.uuid4().hex, start_ms + seq, logs=1, failed=False)
        result = validator.validate(frame(src, seq, events))
        assert result.rejected is None
        out[seq] = result.docs
    return out


async def test_gaps_late_frames_several_workers_and_a_restart_add_up(
    es_url: str, es_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time() * 1000)
    a, b = "sender-a-" + uuid.uuid4().hex[:6], "sender-b-" + uuid.uuid4().hex[:6]
    docs_a = frames_of(a, list(range(1, 21)), now)
    docs_b = frames_of(b, list(range(1, 11)), now)

    def worker(name: str) -> ElasticsearchSink:
        config = IngestConfig(
            es_url=es_url, es_index_prefix=es_prefix, state_dir=str(tmp_path / name)
        )
        return ElasticsearchSink(config, CollectorRegistry())

    # Worker 1 takes sender A's odd frames and all of B but 4; worker 2 the even ones
    # (round robin). Frames 5 and 6 of A are lost; 3 comes late, after a restart of worker 1.
    one, two = worker("one"), worker("two")
    await one.start()
    await two.start()
    try:
        await one.write([d for s in (1, 7, 9, 11, 13, 15, 17, 19) for d in docs_a[s]])
        await two.write([d for s in (2, 4, 8, 10, 12, 14, 16, 18, 20) for d in docs_a[s]])
        await one.write([d for s in range(1, 11) if s != 4 for d in docs_b[s]])
    finally:
        await one.close()
    with QueryClient(es_url, es_prefix) as client:
        client._es.indices.refresh(index=f"{es_prefix}-*")
        before = {s.src: s for s in client.loss(since_ms=now - 60_000).senders}
    assert (before[a].missing, before[b].missing) == (3, 1)  # 3, 5, 6 and B's 4

    restarted = worker("one")
    await restarted.start()
    try:
        await restarted.write(docs_a[3])  # late: it gives back what it had counted
        await restarted.write(docs_a[3])  # resent (a retry): never counted twice
    finally:
        await restarted.close()
        await two.close()

    with QueryClient(es_url, es_prefix) as client:
        client._es.indices.refresh(index=f"{es_prefix}-*")
        report = client.loss(since_ms=now - 60_000)
    senders = {s.src: s for s in report.senders}
    assert (senders[a].first_seq, senders[a].last_seq) == (1, 20)
    assert (senders[a].stored, senders[a].missing) == (18, 2)
    assert (senders[b].stored, senders[b].missing) == (9, 1)
    assert report.by_function() == {"checkout": (27, 3)}

    capsys.readouterr()  # the sinks' log lines
    code = query_main(["loss", "--es-url", es_url, "--es-index-prefix", es_prefix, "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["frames_missing"] == 3
    assert printed["functions"] == {"checkout": {"frames_stored": 27, "frames_missing": 3}}
    assert "not_judged" in printed

    code = query_main(
        ["loss", "--es-url", es_url, "--es-index-prefix", es_prefix, "--function", "x"]
    )
    assert code == 1
    assert "no frames in the window" in capsys.readouterr().err

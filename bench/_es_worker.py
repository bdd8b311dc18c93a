"""Shared by the benchmarks that write to the real Elasticsearch.

:func:`start_es_worker`: a worker in the bench process, on loopback ports the
kernel picks (UDP and HTTP, no TCP), under a fresh index prefix and temporary
directory that :meth:`EsWorker.remove` deletes afterwards.
:func:`raw_bulk_seconds`: the node's own pace, which the sink is measured against.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from faaslens.ingest.runner import Worker


@dataclass
class EsWorker:
    """A started worker, its index prefix (``<stem><8 hex>``) and temporary directory
    (spool and dead letters)."""

    worker: Worker
    es_url: str
    prefix: str
    tmp: str

    def total(self, name: str) -> float:
        """The sum of every sample named ``name`` in the worker's registry."""
        reg = self.worker.registry
        return sum(s.value for m in reg.collect() for s in m.samples if s.name == name)

    def remove(self) -> None:
        """Delete the indices of ``prefix`` and the temporary directory."""
        from devkit.services import delete_es_prefix

        delete_es_prefix(self.es_url, self.prefix)
        shutil.rmtree(self.tmp, ignore_errors=True)


async def start_es_worker(es_url: str, stem: str, **settings: Any) -> EsWorker:
    """Tune the process and start a worker as ``faaslens ingest`` would (errors-only
    logging); ``settings``: further :class:`IngestConfig` fields."""
    from devkit.worker import loopback_config
    from faaslens.ingest.runner import Worker, configure_logging, tune_process

    tune_process()
    configure_logging("error")
    tmp = tempfile.mkdtemp(prefix=f"faaslens-{stem}-")
    prefix = stem + os.urandom(4).hex()
    cfg = loopback_config(es_url, prefix, Path(tmp), tcp_listen="", **settings)
    worker = Worker(cfg)
    await worker.start()
    assert worker.udp_address is not None and worker.pipeline is not None
    return EsWorker(worker, es_url, prefix, tmp)


def raw_bulk_seconds(client: Elasticsearch, bodies: Sequence[bytes], streams: int) -> float:
    """Seconds to POST prebuilt bulk ``bodies`` from ``streams`` threads, no
    serialization and no check but the response's ``errors`` flag (an item error
    exits the bench)."""

    def send(body: bytes) -> None:
        response = client.bulk(operations=body, filter_path="errors")  # type: ignore[arg-type]
        if response["errors"]:
            raise SystemExit("raw bulk: item errors")

    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - started

"""An ingest worker on ephemeral loopback ports, run in a thread of this process."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any


def loopback_config(es_url: str, es_prefix: str, state_dir: Path, **over: Any) -> Any:
    """Ingest config on ephemeral loopback ports (UDP, TCP, HTTP) indexing into
    ``es_url`` under ``es_prefix``; spool, dead letters and pending starts under
    ``state_dir``; ``over``: other fields (``tcp_listen=""``: no TCP)."""
    import dataclasses

    from faaslens.ingest.config import IngestConfig

    cfg = IngestConfig(
        udp_listen="127.0.0.1:0",
        tcp_listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        es_url=es_url,
        es_index_prefix=es_prefix,
        spool_dir=str(state_dir / "spool"),
        dead_letter_path=str(state_dir / "dead-letter.ndjson"),
        pending_state_path=str(state_dir / "pending-state.json"),
    )
    return dataclasses.replace(cfg, **over)


def worker_test_config(es_url: str, es_prefix: str, tmp_path: Path, **over: Any) -> Any:
    """:func:`loopback_config` with the tests' pace: invocations that die settle soon
    after their timeout, batches leave within 0.1 s."""
    pace: dict[str, Any] = {
        "unfinished_grace_s": 0.5,
        "batch_max_wait_s": 0.1,
        "shutdown_timeout_s": 30,
    }
    return loopback_config(es_url, es_prefix, tmp_path, **(pace | over))


class WorkerThread(threading.Thread):
    """An ingest worker on an event loop of its own, next to the thread that drives the demo."""

    def __init__(self, config: Any) -> None:
        super().__init__(name="faaslens-worker", daemon=True)
        self.config = config
        self.worker: Any = None
        self.error: BaseException | None = None
        self.started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        finally:
            self.started.set()

    async def _main(self) -> None:
        from faaslens.ingest.runner import Worker

        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        async with Worker(self.config) as worker:
            self.worker = worker
            self.started.set()
            await self._stop_event.wait()

    def running_worker(self, timeout: float) -> Any:
        """The started worker; raises what made it fail, or TimeoutError."""
        if not self.started.wait(timeout):
            raise TimeoutError("the worker did not start")
        if self.error is not None:
            raise self.error
        if self.worker is None:
            raise RuntimeError("the worker stopped")
        return self.worker

    def stop(self) -> None:
        """Stop the worker (draining what it holds) and wait for the thread."""
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self.join(timeout=90)

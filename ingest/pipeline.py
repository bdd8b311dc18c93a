"""The path from received frames to sink writes, on the event loop.

Sources hand frames to a bounded queue (:meth:`Pipeline.offer` on the loop,
:meth:`Pipeline.offer_threadsafe` from the UDP receive thread). One task
validates them, updates the aggregates and self-metrics and fills the
batcher; writer tasks hand full batches to the sink, so validation goes on
while bulk requests are in flight. A full frame queue (``queue_max`` frames
or ``queue_max_bytes``) pauses TCP readers and, for UDP (which cannot be
paused), counts ``queue_full`` drops; a full batch queue stops validation
until the sink catches up, or, with a sink that has a disk buffer (``spill``),
goes to that buffer so validation keeps pace with the sources. Nothing is
dropped without being counted.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import structlog

from faaslens.backoff import Backoff
from faaslens.ingest.aggregates import Aggregates
from faaslens.ingest.aio import wait_event
from faaslens.ingest.batcher import Batcher
from faaslens.ingest.events import Doc, Sink
from faaslens.ingest.selfmetrics import RejectionLog, SelfMetrics
from faaslens.ingest.sequence import SequenceTracker, frame_origin
from faaslens.ingest.settle import Settler
from faaslens.ingest.validate import Validator

__all__ = ["Pipeline"]

log = structlog.get_logger("faaslens.ingest")

# Bytes of a rejected frame quoted in its log line: enough to recognise the sender's
# mistake, not enough to turn logs into a copy of hostile input.
SAMPLE_BYTES = 160
# Frames validated between two yields to the loop (HTTP, TCP, timers get their turn).
STEP_FRAMES = 256
# Full batches waiting for the sink: enough to overlap validation with bulk requests.
BATCH_QUEUE = 4
# Concurrent sink writes: Elasticsearch indexes two bulk requests in parallel faster
# than one after the other (the sink's write() allows concurrent calls).
WRITERS = 2


def peer_text(peer: Any) -> str:
    """A sender's address as ``host:port`` (``"unknown"`` when the source gave none)."""
    if peer is None or peer == "":
        return "unknown"
    if type(peer) is tuple:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def sample_text(frame: bytes) -> str:
    """The first SAMPLE_BYTES of a frame as text (invalid UTF-8 escaped), marked when cut."""
    head = frame[:SAMPLE_BYTES].decode("utf-8", "backslashreplace")
    return head + "…" if len(frame) > SAMPLE_BYTES else head


class Pipeline:
    """Bounded frame queue -> validate -> aggregates + batcher -> sink."""

    def __init__(
        self,
        *,
        validator: Validator,
        aggregates: Aggregates,
        metrics: SelfMetrics,
        sink: Sink,
        batcher: Batcher,
        queue_max: int,
        queue_max_bytes: int = 64 << 20,
        batch_max_wait_s: float,
        sequences: SequenceTracker | None = None,
        rejections: RejectionLog | None = None,
        retry_base_s: float = 0.1,
        retry_max_s: float = 10.0,
        settler: Settler | None = None,
    ) -> None:
        self.validator = validator
        self.aggregates = aggregates
        self.metrics = metrics
        self.sink = sink
        # A sink with a disk buffer takes overflow batches directly (see _hand_over).
        self._spill: Callable[[Sequence[Doc]], Awaitable[None]] | None = getattr(
            sink, "spill", None
        )
        self.batcher = batcher
        self.queue_max = queue_max
        self.queue_max_bytes = queue_max_bytes
        # Queued bytes = in - out. One writer per counter, so no lock is needed
        # although the UDP thread and the loop both add frames.
        self._in_bytes_thread = 0
        self._in_bytes_loop = 0
        self._out_bytes = 0
        self.batch_max_wait_s = batch_max_wait_s
        self.sequences = sequences or SequenceTracker()
        self.rejections = rejections or RejectionLog()
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.settler = settler
        self._frames: collections.deque[bytes] = collections.deque()
        # id(frame) -> its sender's address, for the frames whose source gave one.
        # An entry lives as long as its frame is queued, so the id cannot be reused.
        self._peers: dict[int, Any] = {}
        # Called on every rejection (e.g. the UDP source then reads senders' addresses).
        self.on_rejection: Callable[[], None] | None = None
        self._waiting = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._batches: asyncio.Queue[list[Doc] | None] = asyncio.Queue(BATCH_QUEUE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pause_hooks: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self._paused = False
        self._last_flush = time.monotonic()
        self.frames_processed = 0
        self.docs_written = 0
        metrics.queue_depth.set_function(self._depth)

    def _depth(self) -> float:
        return float(len(self._frames))

    @property
    def depth(self) -> int:
        """Frames waiting for validation."""
        return len(self._frames)

    @property
    def depth_bytes(self) -> int:
        """Bytes of the frames waiting for validation."""
        return self._in_bytes_thread + self._in_bytes_loop - self._out_bytes

    def _full(self) -> bool:
        return len(self._frames) >= self.queue_max or self.depth_bytes >= self.queue_max_bytes

    @property
    def paused(self) -> bool:
        """True while pausable sources are told to stop reading (the queue was full)."""
        return self._paused

    def add_pause_hooks(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        """Register a source that can stop reading while the queue is full (TCP)."""
        self._pause_hooks.append((pause, resume))

    # -- intake ---------------------------------------------------------------------

    def offer_threadsafe(self, frames: list[bytes], peers: list[Any] | None = None) -> None:
        """Queue frames from another thread; excess over the bound is counted as dropped.

        ``peers``: the senders' addresses, parallel to ``frames``, when the source
        has them (they name the sender in rejection logs)."""
        dq = self._frames
        room = self.queue_max - len(dq)
        room_bytes = self.queue_max_bytes - self.depth_bytes
        size = sum(map(len, frames))
        if room < len(frames) or room_bytes < size:
            keep = 0
            size = 0
            for f in frames[: max(room, 0)]:
                if size + len(f) > room_bytes:
                    break
                size += len(f)
                keep += 1
            dropped = len(frames) - keep
            self.metrics.drop_reasons["queue_full"].inc(dropped)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(
                    self.rejections.note, "frame", "queue_full", dropped
                )
                self._loop.call_soon_threadsafe(self._dropped_were_received, frames[keep:])
            frames = frames[:keep]
        self._in_bytes_thread += size
        if peers:
            # Before the frames are queued: the loop thread pops a frame's peer with it.
            # Not strict: frames past the queue's bound were cut off, their peers are not.
            self._peers.update(zip(map(id, frames), peers, strict=False))
        dq.extend(frames)
        # Wake the processor only if it sleeps: one wakeup per idle period, not per chunk.
        if self._waiting and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def offer(self, frames: Iterable[bytes], peer: str = "") -> None:
        """Queue frames on the loop thread (TCP), all from ``peer``. Sources are paused
        when the queue is full."""
        dq = self._frames
        peers = self._peers
        for f in frames:
            self._in_bytes_loop += len(f)
            if peer:
                peers[id(f)] = peer
            dq.append(f)
        if self._waiting:
            self._wake.set()
        if self._full() and not self._paused:
            self._paused = True
            for pause, _ in self._pause_hooks:
                pause()

    def reject(self, reason: str, *, sample: bytes = b"", **detail: Any) -> None:
        """Count a frame a source rejected itself (e.g. an over-long TCP line)."""
        self.metrics.frame_reasons[reason].inc()
        self.rejections.note("frame", reason, sample=sample_text(sample), **detail)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the processor and writer tasks on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._process_loop(), name="pipeline-process")]
        self._tasks += [
            asyncio.create_task(self._write_loop(), name=f"pipeline-write-{i}")
            for i in range(WRITERS)
        ]

    async def drain(self) -> None:
        """Process every queued frame, flush the batcher, wait for the sink; then stop."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.gather(*self._tasks)

    def abandon(self) -> int:
        """Cancel the tasks (past the shutdown deadline); count what was left as dropped."""
        for task in self._tasks:
            task.cancel()
        left = len(self._frames)
        docs = len(self.batcher)
        while not self._batches.empty():
            batch = self._batches.get_nowait()
            docs += len(batch) if batch else 0
        if left or docs:
            self.metrics.drop_reasons["shutdown"].inc(left)
            self.metrics.docs_dropped.labels("shutdown").inc(docs)
            log.error("shutdown deadline passed: dropped", frames=left, docs=docs)
        self._frames.clear()
        self._peers.clear()
        self._out_bytes = self._in_bytes_thread + self._in_bytes_loop
        return left

    # -- processing -----------------------------------------------------------------

    async def _process_loop(self) -> None:
        dq = self._frames
        while True:
            if dq:
                await self._step()
                if (
                    self._paused
                    and len(dq) < self.queue_max // 2
                    and self.depth_bytes < self.queue_max_bytes // 2
                ):
                    self._paused = False
                    for _, resume in self._pause_hooks:
                        resume()
                await asyncio.sleep(0)
                continue
            if self._stopping:
                break
            await self._settle_due(time.monotonic())
            await self._flush_if_due()
            self._wake.clear()
            self._waiting = True
            if not dq and not self._stopping:
                timeout = None
                now = time.monotonic()
                if len(self.batcher):
                    timeout = max(0.0, self._last_flush + self.batch_max_wait_s - now)
                due = self.settler.next_deadline() if self.settler is not None else None
                if due is not None:
                    timeout = max(0.0, due - now) if timeout is None else min(timeout, due - now)
                await wait_event(self._wake, timeout)
            self._waiting = False
        batch = self.batcher.flush()
        if batch:
            await self._batches.put(batch)
        for _ in range(WRITERS):
            await self._batches.put(None)  # one end marker per writer

    async def _settle_due(self, now: float) -> None:
        """Unfinished invocation documents for the starts past their deadline."""
        settler = self.settler
        if settler is None:
            return
        try:
            docs = settler.settle_due(now)
        except Exception as exc:  # a bug must not stop the pipeline
            self._internal_error("settle", exc)
            return
        if not docs:
            return
        self.metrics.docs_built_by_kind["invocations"].inc(len(docs))
        add = self.batcher.add
        for doc in docs:
            batch = add(doc)
            if batch is not None:
                self._last_flush = now
                await self._hand_over(batch)

    async def _flush_if_due(self) -> None:
        if len(self.batcher) and time.monotonic() - self._last_flush >= self.batch_max_wait_s:
            batch = self.batcher.flush()
            if batch:
                self._last_flush = time.monotonic()
                await self._hand_over(batch)

    async def _step(self) -> None:
        """Validate up to STEP_FRAMES frames and route what they became."""
        dq = self._frames
        n = min(len(dq), STEP_FRAMES)
        popleft = dq.popleft
        validate = self.validator.validate
        see = self.sequences.see
        observe = self.aggregates.observe
        settler = self.settler
        add = self.batcher.add
        m = self.metrics
        now = time.monotonic()
        n_inv = n_log = n_err = n_start = unknown = lost = late = n_ok = 0
        full: list[list[Doc]] = []
        out_bytes = 0
        peers = self._peers
        for _ in range(n):
            frame = popleft()
            out_bytes += len(frame)
            peer = peers.pop(id(frame), None) if peers else None
            try:
                res = validate(frame)
            except Exception as exc:  # a bug must cost one frame, not the pipeline
                self._internal_error("validate", exc, frame, peer)
                continue
            if res.rejected is not None:
                m.frame_reasons[res.rejected].inc()
                self._rejected("frame", res.rejected, frame, peer)
                continue
            if res.event_rejections:
                for reason in res.event_rejections:
                    m.event_reasons[reason].inc()
                    self._rejected("event", reason, frame, peer, src=res.src)
            n_ok += 1
            if res.dropped:
                for part in res.dropped:
                    what, _, reason = part.partition(":")
                    m.parts_dropped.labels(what, reason).inc()
                    self._rejected("part", part, frame, peer, src=res.src)
            unknown += res.unknown_fields
            d = see(res.src, res.seq, now)  # type: ignore[arg-type]  # set when not rejected
            if d > 0:
                lost += d
            elif d < 0:
                late += 1
            if settler is not None and (res.starts or res.invocations):
                try:
                    settler.started(res.starts, now)
                    settler.finished(res.invocations, res.docs)
                except Exception as exc:  # the documents are still written
                    self._internal_error("settle", exc)
            n_start += len(res.starts)
            for inv in res.invocations:
                try:
                    observe(inv, now)
                except Exception as exc:  # the documents are still written
                    self._internal_error("aggregate", exc)
            n_inv += len(res.invocations)
            for doc in res.docs:
                kind = doc.kind
                if kind == "logs":
                    n_log += 1
                elif kind == "errors":
                    n_err += 1
                batch = add(doc)
                if batch is not None:
                    full.append(batch)
        self.frames_processed += n
        self._out_bytes += out_bytes
        if n_ok:
            m.frames_accepted.inc(n_ok)
        if n_inv:
            m.accepted_inv.inc(n_inv)
            m.docs_built_by_kind["invocations"].inc(n_inv)
        if n_start:
            m.accepted_start.inc(n_start)
        if n_log:
            m.accepted_log.inc(n_log)
            m.docs_built_by_kind["logs"].inc(n_log)
        if n_err:
            m.docs_built_by_kind["errors"].inc(n_err)
        if unknown:
            m.unknown_fields.inc(unknown)
        if lost:
            m.frames_lost.inc(lost)
        if late:
            m.frames_late.inc(late)
        for batch in full:
            self._last_flush = now
            await self._hand_over(batch)
        await self._settle_due(now)
        await self._flush_if_due()

    def _dropped_were_received(self, frames: list[bytes]) -> None:
        """Frames the worker dropped (counted as such) arrived: keep them out of the
        sequence gaps, so each loss is counted once. A drop noticed after a later frame
        had already opened the gap gives it back, as a late frame does."""
        see = self.sequences.see
        now = time.monotonic()
        lost = late = 0
        for frame in frames:
            origin = frame_origin(frame)
            if origin is None:
                continue  # not attributable: its gap, if any, stays counted as lost
            d = see(origin[0], origin[1], now)
            if d > 0:
                lost += d
            elif d < 0:
                late += 1
        if lost:
            self.metrics.frames_lost.inc(lost)
        if late:
            self.metrics.frames_late.inc(late)

    def _rejected(self, what: str, reason: str, frame: bytes, peer: Any, **detail: Any) -> None:
        """Log a rejection (rate-limited) with its sender and the start of its frame."""
        if self.on_rejection is not None:
            self.on_rejection()
        self.rejections.note(
            what, reason, peer=peer_text(peer), size=len(frame), sample=sample_text(frame), **detail
        )

    async def _hand_over(self, batch: list[Doc]) -> None:
        """Queue a batch for the writers; when they are all busy and the queue is full
        (the sink takes less than arrives), spill it to the sink's disk buffer instead
        of stopping validation, which would fill the frame queue and drop datagrams."""
        if self._batches.full() and self._spill is not None:
            self.metrics.batches_spilled.inc()
            try:
                await self._spill(batch)
            except Exception as exc:  # the writers take it then, as before spilling existed
                self._internal_error("spill", exc)
            else:
                return
        await self._batches.put(batch)

    def _internal_error(
        self, stage: str, exc: Exception, frame: bytes = b"", peer: Any = None
    ) -> None:
        self.metrics.internal_errors.labels(stage).inc()
        self.rejections.note(
            "internal_error",
            stage,
            error=repr(exc)[:500],
            peer=peer_text(peer),
            sample=sample_text(frame),
        )

    async def _write_loop(self) -> None:
        while True:
            batch = await self._batches.get()
            if batch is None:
                return
            await self._write(batch)

    async def _write(self, batch: Sequence[Doc]) -> None:
        """Write one batch, retrying a sink that raises (its contract is not to)."""
        backoff = Backoff(self.retry_base_s, self.retry_max_s)
        while True:
            try:
                await self.sink.write(batch)
            except Exception as exc:  # a broken sink must not kill the pipeline
                self.metrics.sink_errors.inc()
                log.error("sink write failed, retrying", error=repr(exc), docs=len(batch))
                await asyncio.sleep(backoff.next())
                continue
            self.metrics.batches.inc()
            self.docs_written += len(batch)
            return

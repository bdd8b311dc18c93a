"""Lost-frame accounting from the senders' sequence numbers (protocol, step 4).

Per ``src`` the highest ``seq`` seen is kept. A jump from ``n`` to ``n+k``
counts ``k-1`` lost frames; a late frame (lower than the highest) takes one
back, unless it is older than the sender's first frame seen (never counted).
Prometheus counters cannot go down, so the take-backs are counted separately:
lost frames = ``lost - late``. Frames the worker drops itself (queue full) are
seen too (:func:`frame_origin`), so they are never also counted as gaps.
Senders idle for ``ttl_s`` are forgotten and the table is capped, so a flood of
``src`` values cannot grow memory without bound. The counts are exact only
while each sender reaches this one worker: across workers and restarts the
loss ledger in Elasticsearch is (``faaslens query loss``).
"""

from __future__ import annotations

import re

__all__ = ["SequenceTracker", "frame_origin"]

# Envelope keys come first in what shippers send (``{"v":1,"src":...,"seq":...``); a
# signed frame has ~80 bytes of signature before its JSON.
_HEAD_BYTES = 512
_SRC = re.compile(rb'"src"\s*:\s*"([A-Za-z0-9_.\-]{1,64})"')
_SEQ = re.compile(rb'"seq"\s*:\s*([0-9]{1,19})\s*[,}]')


def frame_origin(frame: bytes) -> tuple[str, int] | None:
    """``(src, seq)`` read from the head of a frame that will not be validated (the worker
    drops it: queue full), or None when they are not in its first bytes.

    Telling the tracker about a frame the worker dropped itself keeps that frame out
    of the sequence gaps: it is counted once, as ``faaslens_frames_dropped_total``.
    Nothing else is trusted from an unvalidated frame.
    """
    head = frame[:_HEAD_BYTES]
    src = _SRC.search(head)
    seq = _SEQ.search(head)
    if src is None or seq is None:
        return None
    return src.group(1).decode("ascii"), int(seq.group(1))


class SequenceTracker:
    """Counts gaps and late arrivals in per-sender sequence numbers."""

    __slots__ = ("_senders", "late", "lost", "max_senders", "ttl_s")

    def __init__(self, ttl_s: float = 900.0, max_senders: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_senders = max_senders
        # src -> [highest seq, last seen, first seq seen]
        self._senders: dict[str, list[float]] = {}
        self.lost = 0  # frames missing from gaps (monotonic)
        self.late = 0  # frames below the highest seen (monotonic)

    def __len__(self) -> int:
        return len(self._senders)

    def see(self, src: str, seq: int, now: float) -> int:
        """Record one frame; return the change in net lost frames (gap size, or -1 if late)."""
        st = self._senders.get(src)
        if st is None:
            # The first frame of a sender (or since we started) says nothing about loss.
            if len(self._senders) >= self.max_senders:
                self.sweep(now, force_evict=True)
            self._senders[src] = [seq, now, seq]
            return 0
        st[1] = now
        high = st[0]
        if seq < st[2]:
            # Before the first frame seen: never counted in a gap, so nothing to give back.
            return 0
        if seq > high:
            st[0] = seq
            gap = int(seq - high - 1)
            self.lost += gap
            return gap
        if seq < high:
            self.late += 1
            return -1
        return 0  # a duplicate of the highest: neither lost nor late

    def sweep(self, now: float, force_evict: bool = False) -> int:
        """Forget senders idle longer than the TTL (and the oldest tenth if forced)."""
        cutoff = now - self.ttl_s
        idle = [src for src, st in self._senders.items() if st[1] < cutoff]
        if force_evict and not idle:
            by_age = sorted(self._senders.items(), key=lambda item: item[1][1])
            idle = [src for src, _ in by_age[: max(1, len(by_age) // 10)]]
        for src in idle:
            del self._senders[src]
        return len(idle)

"""Lost-frame accounting from the senders' sequence numbers (protocol, step 4).

Per ``src`` the highest ``seq`` seen is kept. A jump from ``n`` to ``n+k``
counts ``k-1`` lost frames; a late frame (lower than the highest) takes one
back. Prometheus counters cannot go down, so the take-backs are counted
separately: lost frames = ``lost - late``. Senders idle for ``ttl_s`` are
forgotten and the table is capped, so a flood of ``src`` values cannot grow
memory without bound.
"""

from __future__ import annotations

__all__ = ["SequenceTracker"]


class SequenceTracker:
    """Counts gaps and late arrivals in per-sender sequence numbers."""

    __slots__ = ("_senders", "late", "lost", "max_senders", "ttl_s")

    def __init__(self, ttl_s: float = 900.0, max_senders: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_senders = max_senders
        self._senders: dict[str, list[float]] = {}  # src -> [highest seq, last seen]
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
            self._senders[src] = [seq, now]
            return 0
        st[1] = now
        high = st[0]
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

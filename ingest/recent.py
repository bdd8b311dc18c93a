"""A bounded memory of recently seen keys: "was this seen in the last window?".

Two generations of sets: a key is looked up in both and added to the
current one; the current generation becomes the old one after half the
window, or as soon as it holds ``max_keys`` keys. So a key is remembered for
at least half the window (less only when more than ``max_keys`` keys arrive
in half a window) and memory stays under two generations of ``max_keys``.
Keys are hashes (Python ints), ~64 bytes each with the set's slot; a
collision between two distinct records of one window is a 2**-64 event.
"""

from __future__ import annotations

__all__ = ["RecentKeys"]


class RecentKeys:
    """Recently seen hashable keys, bounded in time and in count."""

    __slots__ = ("_cur", "_half", "_max", "_old", "_rotate_at")

    def __init__(self, window_s: float, max_keys: int) -> None:
        if window_s <= 0 or max_keys < 1:
            raise ValueError("window_s and max_keys must be positive")
        self._half = window_s / 2
        self._max = max_keys
        self._cur: set[int] = set()
        self._old: set[int] = set()
        self._rotate_at = float("-inf")  # the first key starts the first generation

    def first_time(self, key: int, now: float) -> bool:
        """Remember ``key`` (at monotonic time ``now``); False if it was seen already."""
        cur = self._cur
        if key in cur or key in self._old:
            return False
        if now >= self._rotate_at or len(cur) >= self._max:
            self._old = cur
            cur = self._cur = set()
            self._rotate_at = now + self._half
        cur.add(key)
        return True

    def __contains__(self, key: int) -> bool:
        """Seen within the window (a cheaper test than :meth:`first_time` for hits)."""
        return key in self._cur or key in self._old

    def __len__(self) -> int:
        return len(self._cur) + len(self._old)

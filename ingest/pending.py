"""Started invocations waiting for their record: the worker's settle table.

Pure: no I/O, no clock of its own (callers pass ``now``, monotonic seconds),
no metrics. Every ``start`` event puts an invocation here; its ``inv`` record
takes it out (:meth:`Pending.finish`). One whose record has not come by its
timeout plus a grace period is handed out by :meth:`Pending.due` to be
settled as *unfinished*, and its id is remembered for a while, so that a
record arriving later still can replace the unfinished document.

Deadlines: entries are grouped by their timeout (whole seconds); within a
group, arrival order is deadline order, so each group is an insertion-ordered
map and :meth:`due` only looks at the front of each group. Deleting a settled
entry is O(1) and leaves nothing behind (no lazy heap entries that outlive it).

Bounded: at most ``cap`` pending entries (a start past the cap is refused and
counted in :attr:`Pending.overflow`), and ``cap`` each of remembered ids
(oldest forgotten first): those settled as unfinished, and those whose record
came with no start pending while other starts were pending (so that a start
reordered behind its record is not waited for; with no start pending at all,
as for senders that send none, nothing is remembered).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import orjson

from faaslens.ingest.documents import attempt_id

__all__ = ["Entry", "Pending"]

STATE_VERSION = 1
# The longest a start is waited for, whatever timeout it claims: a day (AWS allows
# 15 minutes, GCP 60, Azure's premium plans unbounded; a longer claim is a bug or abuse).
MAX_WAIT_S = 86_400

Finish = Literal["settled", "late", "unseen"]


class Entry(NamedTuple):
    """One started invocation: when to give up on it, and what its start said."""

    deadline: float  # monotonic seconds
    res: dict[str, Any]  # the frame's resource block (shared between entries of a sender)
    start: dict[str, Any]  # the start event's own fields (without "t")


class Pending:
    """Started invocations by id, with their deadlines (see the module docstring)."""

    __slots__ = (
        "_finished",
        "_group_of",
        "_groups",
        "_unfinished",
        "cap",
        "default_timeout_s",
        "grace_s",
        "overflow",
    )

    def __init__(self, *, cap: int, grace_s: float, default_timeout_s: float) -> None:
        if cap < 1:
            raise ValueError("cap must be >= 1")
        self.cap = cap
        self.grace_s = grace_s
        self.default_timeout_s = default_timeout_s
        self.overflow = 0  # starts refused because the table was full
        self._groups: dict[int, OrderedDict[str, Entry]] = {}  # timeout (s) -> id -> entry
        self._group_of: dict[str, int] = {}
        self._unfinished: OrderedDict[str, None] = OrderedDict()  # settled as unfinished
        # Records that came with no start pending: a start arriving after its record
        # (reordered in transit) must not be waited for.
        self._finished: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._group_of)

    def is_empty(self) -> bool:
        """Nothing pending and no id remembered: nothing worth saving."""
        return not self._group_of and not self._unfinished

    def __contains__(self, exec_id: object) -> bool:
        return exec_id in self._group_of

    def timeout_of(self, start: Mapping[str, Any]) -> int:
        """Whole seconds the worker waits beyond the start: the event's ``faas.timeout``
        (nanoseconds, rounded up) or the default, plus the grace period; at most
        :data:`MAX_WAIT_S`."""
        timeout_ns = start.get("faas.timeout")
        timeout_s = -(-timeout_ns // 1_000_000_000) if timeout_ns else self.default_timeout_s
        return min(int(-(-(timeout_s + self.grace_s) // 1)), MAX_WAIT_S)

    def start(self, res: dict[str, Any], start: dict[str, Any], now: float) -> bool:
        """Track a started invocation; False (and counted) if the table is full.

        A second start with the same id (a platform retry) replaces the first.
        """
        # Attempts of one id are settled apart, under their documents' ids.
        exec_id = attempt_id(start["faas.execution"], start.get("faas.attempt"))
        if self._finished and exec_id in self._finished:
            del self._finished[exec_id]
            return True  # its record is already here: nothing to wait for
        if exec_id in self._group_of:
            self._drop(exec_id)
        # An id settled as unfinished stays remembered: a retry reusing it (AWS retries
        # do) must still have its record replace the unfinished document.
        if len(self._group_of) >= self.cap:
            self.overflow += 1
            return False
        wait = self.timeout_of(start)
        group = self._groups.get(wait)
        if group is None:
            group = self._groups[wait] = OrderedDict()
        group[exec_id] = Entry(now + wait, res, start)
        self._group_of[exec_id] = wait
        return True

    def finish(self, exec_id: str) -> Finish:
        """A record arrived: ``settled`` (it was pending), ``late`` (it had already been
        settled as unfinished: its document must replace that one), else ``unseen``."""
        pending = self._drop(exec_id)
        if self._unfinished and exec_id in self._unfinished:
            del self._unfinished[exec_id]
            return "late"  # (also when a retry with the same id was pending)
        if pending:
            return "settled"
        if self._group_of:
            # Starts are coming in: this record's own start may still be on its way.
            # (Records of senders without start events, alone, cost nothing here.)
            _remember(self._finished, exec_id, self.cap)
        return "unseen"

    def _drop(self, exec_id: str) -> bool:
        wait = self._group_of.pop(exec_id, None)
        if wait is None:
            return False
        group = self._groups[wait]
        del group[exec_id]
        if not group:
            del self._groups[wait]
        return True

    def due(self, now: float) -> list[tuple[str, Entry]]:
        """Take out the entries whose deadline has passed: they are unfinished."""
        out: list[tuple[str, Entry]] = []
        for wait, group in list(self._groups.items()):
            while group:
                exec_id, entry = next(iter(group.items()))
                if entry.deadline > now:
                    break
                group.popitem(last=False)
                del self._group_of[exec_id]
                out.append((exec_id, entry))
            if not group:
                del self._groups[wait]
        for exec_id, _ in out:
            _remember(self._unfinished, exec_id, self.cap)
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline (monotonic seconds), or None when nothing is pending."""
        best: float | None = None
        for group in self._groups.values():
            first = next(iter(group.values())).deadline
            if best is None or first < best:
                best = first
        return best

    # -- surviving a restart --------------------------------------------------------

    def dump(self, now: float, wall_ms: int) -> bytes:
        """The table as JSON bytes: each entry with the seconds it had left at ``now``,
        and the wall-clock time of the dump (``wall_ms``, epoch ms) to count downtime."""
        entries = [
            [exec_id, entry.deadline - now, entry.res, entry.start]
            for group in self._groups.values()
            for exec_id, entry in group.items()
        ]
        return orjson.dumps(
            {
                "v": STATE_VERSION,
                "saved_at": wall_ms,
                "pending": entries,
                "unfinished": list(self._unfinished),
            }
        )

    def load(self, data: bytes, now: float, wall_ms: int) -> int:
        """Add the entries of :meth:`dump` (their time left shortened by the downtime);
        return how many were restored. Raises ValueError on data it cannot read."""
        try:
            state = orjson.loads(data)
            if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
                raise ValueError("unknown pending-state version")
            downtime = max(0.0, (wall_ms - int(state["saved_at"])) / 1000.0)
            restored = 0
            for exec_id in state["unfinished"]:
                _remember(self._unfinished, str(exec_id), self.cap)
            for raw_id, left, res, start in state["pending"]:
                if len(self._group_of) >= self.cap:
                    self.overflow += 1
                    continue
                if not isinstance(res, dict) or not isinstance(start, dict):
                    raise ValueError("malformed pending entry")
                exec_id = str(raw_id)
                self._drop(exec_id)
                wait = self.timeout_of(start)
                group = self._groups.setdefault(wait, OrderedDict())
                group[exec_id] = Entry(now + float(left) - downtime, res, start)
                self._group_of[exec_id] = wait
                restored += 1
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable pending state: {exc}") from exc
        # Restored entries may be out of deadline order within a group: put them in order.
        for wait, group in self._groups.items():
            self._groups[wait] = OrderedDict(sorted(group.items(), key=lambda kv: kv[1].deadline))
        return restored


def _remember(ids: OrderedDict[str, None], exec_id: str, cap: int) -> None:
    """Add ``exec_id`` to a bounded memory of ids (the oldest is forgotten past ``cap``)."""
    ids[exec_id] = None
    if len(ids) > cap:
        ids.popitem(last=False)

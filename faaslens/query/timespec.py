"""Time arguments of ``faaslens query``: relative (``15m``, ``2h``, ``7d``), ISO 8601, ``now``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class TimeSpecError(ValueError):
    """A time argument that is neither relative, ISO 8601 nor ``now``."""


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds for ``text``.

    ``15m`` means 15 minutes before now; ``2026-11-25T10:00`` (UTC unless an
    offset is given), ``2026-11-25`` and ``now`` are absolute.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    spec = text.strip()
    if spec == "now":
        return now
    if m := _RELATIVE.match(spec):
        return now - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    try:
        moment = datetime.fromisoformat(spec.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TimeSpecError(
            f"bad time {text!r}: use e.g. 15m, 2h, 7d, 2026-11-25T10:00:00Z or now"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_ms(epoch_ms: int | float | str | None) -> str:
    """ISO 8601 UTC with milliseconds, or ``-`` when absent."""
    if epoch_ms is None or epoch_ms == "":
        return "-"
    if isinstance(epoch_ms, str):
        if not epoch_ms.lstrip("-").isdigit():
            return epoch_ms  # already a date string
        epoch_ms = int(epoch_ms)
    moment = datetime.fromtimestamp(float(epoch_ms) / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

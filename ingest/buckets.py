"""Histogram bucket bounds for custom metrics, chosen by the metric's unit.

A custom histogram gets its bounds when its first sample arrives: the
worker's ``custom_histogram_buckets`` setting for that metric name if there
is one, else the table below for the sample's ``unit``, else the unitless
default. The bounds are upper bounds in the unit the function sends
(``+Inf`` is implied). Units are matched case-insensitively.

| unit | bounds |
|---|---|
| ``s``, ``sec``, ``second(s)`` | 1 ms .. 15 min (the invocation duration buckets) |
| ``ms``, ``millisecond(s)`` | 1 .. 900,000 |
| ``us``, ``µs``, ``microsecond(s)`` | 1,000 .. 9e8 |
| ``ns``, ``nanosecond(s)`` | 1e6 .. 9e11 |
| ``b``, ``by``, ``byte(s)`` | 64 B .. 1 GiB, x4 per bucket |
| ``kb``, ``kib``, ``kilobyte(s)`` | 4 .. 1,048,576 (1 GiB), x4 |
| ``mb``, ``mib``, ``megabyte(s)`` | 0.0625 .. 1,024 (1 GiB), x4 |
| ``%``, ``percent`` | 1 .. 100 |
| ``ratio``, ``fraction`` | 0.01 .. 1 |
| none or anything else | 0.01 .. 1,000,000, steps 1 / 2.5 / 5 per decade |
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["SECONDS", "UNITLESS", "BucketTable", "buckets_for", "check_bounds"]

SECONDS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
)  # fmt: skip
_BYTES: Final = tuple(float(64 * 4**i) for i in range(13))  # 64 B .. 1 GiB
UNITLESS: Final = (*(round(m * 10.0**e, 6) for e in range(-2, 6) for m in (1.0, 2.5, 5.0)), 1e6)


def _scaled(bounds: Iterable[float], factor: float) -> tuple[float, ...]:
    return tuple(round(b * factor, 9) for b in bounds)


_BY_UNIT: Final[dict[str, tuple[float, ...]]] = {}
for _names, _bounds in (
    (("s", "sec", "second", "seconds"), SECONDS),
    (("ms", "millisecond", "milliseconds"), _scaled(SECONDS, 1e3)),
    (("us", "µs", "microsecond", "microseconds"), _scaled(SECONDS, 1e6)),
    (("ns", "nanosecond", "nanoseconds"), _scaled(SECONDS, 1e9)),
    (("b", "by", "byte", "bytes"), _BYTES),
    (("kb", "kib", "kilobyte", "kilobytes"), _scaled(_BYTES[3:], 1 / 1024)),
    (("mb", "mib", "megabyte", "megabytes"), _scaled(_BYTES[6:], 1 / 1024**2)),
    (
        ("%", "percent"),
        (1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 100.0),
    ),
    (
        ("ratio", "fraction"),
        (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
    ),
):
    for _name in _names:
        _BY_UNIT[_name] = _bounds

BucketTable = Mapping[str, tuple[float, ...]]


def check_bounds(bounds: Iterable[float]) -> tuple[float, ...]:
    """Bounds as a sorted tuple of distinct finite floats; ValueError if there are none
    or one is not finite (``+Inf`` is always added by the histogram itself)."""
    out = tuple(sorted({float(b) for b in bounds}))
    if not out or not all(math.isfinite(b) for b in out):
        raise ValueError("histogram buckets must be finite numbers, at least one")
    return out


def buckets_for(name: str, unit: str | None, configured: BucketTable) -> tuple[float, ...]:
    """The bounds of custom histogram ``name`` whose first sample came with ``unit``."""
    chosen = configured.get(name)
    if chosen is not None:
        return chosen
    if unit:
        return _BY_UNIT.get(unit.lower(), UNITLESS)
    return UNITLESS

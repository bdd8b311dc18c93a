"""Histogram bucket bounds for custom metrics, chosen by the metric's unit.

A custom histogram gets its bounds when its first sample arrives: the
worker's ``custom_histogram_buckets`` setting for that metric name if there
is one, else the table below for the sample's ``unit``
(:func:`faaslens.protocol.histogram_buckets`, which the shipper also uses to
pre-aggregate), else the unitless default. Shippers pre-aggregate into the
protocol's buckets: a per-name setting should keep those bounds it wants
exact (a pre-aggregated object counts all its observations in the bucket of
its ``value``). The bounds are upper bounds in the unit the function sends
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

from faaslens.protocol import histogram_buckets

__all__ = ["BucketTable", "buckets_for", "check_bounds"]

BucketTable = Mapping[str, tuple[float, ...]]


def check_bounds(bounds: Iterable[float]) -> tuple[float, ...]:
    """Bounds as a sorted tuple of distinct finite floats; ValueError if there are none
    or one is not finite (``+Inf`` is always added by the histogram itself)."""
    out = tuple(sorted({float(b) for b in bounds}))
    if not out or not all(math.isfinite(b) for b in out):
        raise ValueError("histogram buckets must be finite numbers, at least one")
    return out


def buckets_for(name: str, unit: str | None, configured: BucketTable) -> tuple[float, ...]:
    """The bounds of custom histogram ``name`` whose first sample came with ``unit``:
    the worker's setting for the name, else the protocol's table for the unit."""
    chosen = configured.get(name)
    if chosen is not None:
        return chosen
    return histogram_buckets(unit)

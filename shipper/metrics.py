"""Custom metrics: counters, gauges and histograms carried with the invocation record.

The worker turns them into ``faas_custom_<name>`` Prometheus series with the
function added as a label. Labels must stay bounded (a handful of values
each): never put an id in a label. Updates outside an invocation are carried
by the next one.
"""

from __future__ import annotations

import math

from faaslens.shipper.core import get_shipper
from faaslens.shipper.record import clean_metric_labels, valid_name
from faaslens.shipper.wire import truncate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from faaslens.shipper.core import Shipper


# Distinct label sets one metric may use in a process; past it, updates are dropped and
# counted: a label fed with ids would otherwise flood the worker's series.
MAX_LABEL_SETS = 100


class _Metric:
    __slots__ = ("_label_sets", "_shipper", "name", "unit")
    kind = ""

    def __init__(self, name: str, unit: str | None = None, shipper: Shipper | None = None) -> None:
        if not valid_name(name):
            # A programming error, caught where the metric is defined (import time).
            raise ValueError(f"metric name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]{{0,63}}")
        self.name = name
        self.unit = truncate(unit, 16) if unit else None
        self._shipper = shipper
        self._label_sets: set[tuple[tuple[str, str], ...]] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def _record(self, value: float, labels: dict[str, object]) -> None:
        shipper = self._shipper or get_shipper()
        try:
            if type(value) is bool or not isinstance(value, (int, float)):
                value = float(value)
            if not math.isfinite(value) or (self.kind == "counter" and value < 0):
                shipper.drop_metric()
                return
            clean, dropped = clean_metric_labels(labels) if labels else (None, 0)
            if dropped:
                shipper.drop_metric(dropped)
            if clean:
                redact = shipper.redact
                for label in clean:
                    if redact.sensitive(label):
                        clean[label] = redact.replacement
                key = tuple(clean.items())
                if key not in self._label_sets:
                    if len(self._label_sets) >= MAX_LABEL_SETS:
                        shipper.drop_metric()
                        return
                    self._label_sets.add(key)
            shipper.add_metric(self.kind, self.name, value, clean, self.unit)
        except (TypeError, ValueError, OverflowError):
            shipper.drop_metric()


class Counter(_Metric):
    """A count that only goes up, summed per invocation."""

    __slots__ = ()
    kind = "counter"

    def inc(self, value: float = 1, **labels: object) -> None:
        """Add ``value`` (>= 0) for these labels."""
        self._record(value, labels)


class Gauge(_Metric):
    """A value that goes up and down; the last one set in an invocation is sent."""

    __slots__ = ()
    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        """Set the value for these labels."""
        self._record(value, labels)


class Histogram(_Metric):
    """A distribution: observations are counted per bucket within the invocation, so
    any number of them costs at most one metric object per bucket used."""

    __slots__ = ()
    kind = "histogram"

    def observe(self, value: float, **labels: object) -> None:
        """Record one observation for these labels."""
        self._record(value, labels)


def counter(name: str, unit: str | None = None) -> Counter:
    """A counter (``faas_custom_<name>_total`` on the worker). Raises ValueError on a bad name."""
    return Counter(name, unit)


def gauge(name: str, unit: str | None = None) -> Gauge:
    """A gauge. Raises ValueError on a bad name."""
    return Gauge(name, unit)


def histogram(name: str, unit: str | None = None) -> Histogram:
    """A histogram. Raises ValueError on a bad name."""
    return Histogram(name, unit)

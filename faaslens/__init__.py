"""faaslens: observability for serverless functions.

In a function::

    import faaslens

    log = faaslens.get_logger(__name__)
    orders = faaslens.counter("orders")

    @faaslens.instrument
    def handler(event, context):
        log.info("order placed", order_id=event["id"])
        orders.inc(region="eu")
        return {"ok": True}

Each invocation leaves one record (timing, outcome, cold start, memory, cost)
with its log lines, error and custom metrics, sent to the ingest worker.

Every public name is imported on first use: ``import faaslens`` costs next to
nothing, and structlog is imported only by :func:`configure_structlog`.
The in-function library lives in :mod:`faaslens.shipper`, the worker in
:mod:`faaslens.ingest` (``pip install 'faaslens[ingest]'``), the reading tools
in :mod:`faaslens.query`. See docs/shipper.md for the ``FAASLENS_*`` settings.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from faaslens.shipper.config import ConfigError, ShipperConfig
    from faaslens.shipper.core import (
        Shipper,
        configure,
        flush,
        get_shipper,
        instrument,
        invocation,
        set_label,
        stats,
    )
    from faaslens.shipper.logging_handler import LoggingHandler, capture_logging
    from faaslens.shipper.logs import Logger, configure_structlog, get_logger
    from faaslens.shipper.metrics import Counter, Gauge, Histogram, counter, gauge, histogram
    from faaslens.shipper.record import Invocation, current_invocation

_LAZY = {
    "instrument": "faaslens.shipper.core",
    "invocation": "faaslens.shipper.core",
    "configure": "faaslens.shipper.core",
    "flush": "faaslens.shipper.core",
    "get_shipper": "faaslens.shipper.core",
    "set_label": "faaslens.shipper.core",
    "stats": "faaslens.shipper.core",
    "Shipper": "faaslens.shipper.core",
    "ShipperConfig": "faaslens.shipper.config",
    "ConfigError": "faaslens.shipper.config",
    "Invocation": "faaslens.shipper.record",
    "current_invocation": "faaslens.shipper.record",
    "get_logger": "faaslens.shipper.logs",
    "Logger": "faaslens.shipper.logs",
    "configure_structlog": "faaslens.shipper.logs",
    "LoggingHandler": "faaslens.shipper.logging_handler",
    "capture_logging": "faaslens.shipper.logging_handler",
    "counter": "faaslens.shipper.metrics",
    "gauge": "faaslens.shipper.metrics",
    "histogram": "faaslens.shipper.metrics",
    "Counter": "faaslens.shipper.metrics",
    "Gauge": "faaslens.shipper.metrics",
    "Histogram": "faaslens.shipper.metrics",
}

__all__ = [
    "ConfigError",
    "Counter",
    "Gauge",
    "Histogram",
    "Invocation",
    "Logger",
    "LoggingHandler",
    "Shipper",
    "ShipperConfig",
    "capture_logging",
    "configure",
    "configure_structlog",
    "counter",
    "current_invocation",
    "flush",
    "gauge",
    "get_logger",
    "get_shipper",
    "histogram",
    "instrument",
    "invocation",
    "set_label",
    "stats",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faaslens' has no attribute {name!r}")
    # __import__ rather than importlib: the same import machinery as an import statement.
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__

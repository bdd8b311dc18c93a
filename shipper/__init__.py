"""faaslens shipper: one record per function invocation, with its logs, errors and metrics.

Usage::

    import shipper

    log = shipper.get_logger(__name__)
    orders = shipper.counter("orders")

    @shipper.instrument
    def handler(event, context):
        log.info("order placed", order_id=event["id"])
        orders.inc(region="eu")
        return {"ok": True}

Everything is imported on first use: ``import shipper`` costs next to nothing,
and structlog is imported only by :func:`configure_structlog`.
See docs/shipper.md for the settings (``FAASLENS_*``) and providers.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from shipper.config import ConfigError, ShipperConfig
    from shipper.core import (
        Shipper,
        configure,
        flush,
        get_shipper,
        instrument,
        invocation,
        set_label,
        stats,
    )
    from shipper.invocation import Invocation, current_invocation
    from shipper.logging_handler import LoggingHandler, capture_logging
    from shipper.logs import Logger, configure_structlog, get_logger
    from shipper.metrics import Counter, Gauge, Histogram, counter, gauge, histogram

_LAZY = {
    "instrument": "shipper.core",
    "invocation": "shipper.core",
    "configure": "shipper.core",
    "flush": "shipper.core",
    "get_shipper": "shipper.core",
    "set_label": "shipper.core",
    "stats": "shipper.core",
    "Shipper": "shipper.core",
    "ShipperConfig": "shipper.config",
    "ConfigError": "shipper.config",
    "Invocation": "shipper.invocation",
    "current_invocation": "shipper.invocation",
    "get_logger": "shipper.logs",
    "Logger": "shipper.logs",
    "configure_structlog": "shipper.logs",
    "LoggingHandler": "shipper.logging_handler",
    "capture_logging": "shipper.logging_handler",
    "counter": "shipper.metrics",
    "gauge": "shipper.metrics",
    "histogram": "shipper.metrics",
    "Counter": "shipper.metrics",
    "Gauge": "shipper.metrics",
    "Histogram": "shipper.metrics",
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
        raise AttributeError(f"module 'shipper' has no attribute {name!r}")
    # __import__ rather than importlib: the same import machinery as an import statement.
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__

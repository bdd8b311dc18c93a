"""The shipper's settings: defaults < ``FAASLENS_*`` environment < explicit arguments.

This is the only module of the shipper that reads the environment. Settings
are read once, when the shipper is first used; a bad value never breaks the
function: it is reported on stderr and its default is used instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from faaslens.protocol import LEVEL_ALIASES, LEVEL_NUMBERS
from faaslens.values import parse_bool

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing stays out of the import path of the function
    from typing import Any

ENV_PREFIX = "FAASLENS_"
DEFAULT_ENDPOINT = "udp://127.0.0.1:8518"
DEFAULT_REDACT_KEYS = ("password", "secret", "token", "authorization", "cookie", "api_key")

# Price overrides: FAASLENS_PRICE_<NAME> -> field of a price row (see cost.py).
PRICE_ENV_KEYS = ("per_request", "per_gb_s", "per_ghz_s", "per_vcpu_s", "price_id")


class ConfigError(ValueError):
    """A setting that cannot be used, with the name that holds it."""


class ShipperConfig:
    """Everything the shipper can be told. Attribute names double as ``FAASLENS_<NAME>``.

    Build it with :func:`load_config` (environment) or directly with keyword
    arguments; unknown keywords raise :class:`ConfigError`.
    """

    __slots__ = (
        "cpu",
        "debug_buffer",
        "disabled",
        "echo",
        "endpoint",
        "environment",
        "flush_interval_ms",
        "function_name",
        "gcp_generation",
        "hmac_key",
        "hmac_key_id",
        "http_failure_status",
        "log_level",
        "log_sample_rate",
        "max_datagram",
        "memory_mb",
        "prices",
        "redact_keys",
        "region",
        "service",
        "service_version",
        "start_events",
        "tcp_timeout_s",
        "timeout_margin_ms",
    )

    def __init__(self, **values: Any) -> None:
        self.endpoint: str = DEFAULT_ENDPOINT
        self.service: str | None = None
        self.service_version: str | None = None
        self.environment: str | None = None
        self.function_name: str | None = None
        self.region: str | None = None
        # Fraction of invocations whose debug/info lines are shipped (warnings and up always are).
        self.log_sample_rate: float = 1.0
        self.log_level: str = "info"
        # Lines below log_level (and unsampled lines) kept per invocation, shipped on failure.
        self.debug_buffer: int = 200
        self.hmac_key: str | None = None
        self.hmac_key_id: str = "k1"
        # Packing target; None: 60,000 to a loopback endpoint, else 1,400 (docs/protocol.md).
        self.max_datagram: int | None = None
        self.redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
        self.echo: bool = False
        self.disabled: bool = False
        self.memory_mb: int | None = None
        self.cpu: float | None = None
        self.gcp_generation: int = 2
        # Record a timeout this long before the platform's deadline (AWS); 0 disables.
        self.timeout_margin_ms: int = 50
        self.tcp_timeout_s: float = 0.5
        # An HTTP answer with this status or above makes the outcome a failure; 0: never.
        self.http_failure_status: int = 500
        # Announce each invocation with a start event, so the worker can tell one that
        # never finished (docs/protocol.md, t: "start").
        self.start_events: bool = True
        # A line leaves at most 3/4 of this after being logged once its invocation has run
        # half of it (shipper/flusher.py), so a process that dies keeps the lines logged
        # this long before (0: lines leave with the record only).
        self.flush_interval_ms: int = 1000
        self.prices: dict[str, Any] = {}
        for key, value in values.items():
            if key not in self.__slots__:
                raise ConfigError(f"unknown shipper setting {key!r}")
            setattr(self, key, _coerce(key, value))
        parse_endpoint(self.endpoint)

    @property
    def min_level(self) -> int:
        """Numeric level below which lines go to the debug buffer."""
        return LEVEL_NUMBERS[self.log_level]

    def replace(self, **values: Any) -> ShipperConfig:
        """A copy with some settings changed."""
        current = {k: getattr(self, k) for k in self.__slots__}
        current.update(values)
        return ShipperConfig(**current)

    def __repr__(self) -> str:
        shown = {k: getattr(self, k) for k in self.__slots__ if k != "hmac_key"}
        shown["hmac_key"] = "***" if self.hmac_key else None
        return f"ShipperConfig({shown!r})"


def _coerce(key: str, raw: Any) -> Any:
    """Turn an environment string (or a Python value) into the setting's type."""
    try:
        if key in ("echo", "disabled"):
            return parse_bool(raw, default=False)  # both are off unless switched on
        if key == "start_events":
            return parse_bool(raw, default=True)
        if key == "max_datagram" and raw in (None, ""):
            return None
        if key in (
            "max_datagram",
            "debug_buffer",
            "timeout_margin_ms",
            "gcp_generation",
            "http_failure_status",
            "flush_interval_ms",
        ):
            value = _number(int, raw)
            if key == "http_failure_status" and value and not 100 <= value <= 999:
                raise ValueError("0 (never) or an HTTP status, 100-999")
            if key == "max_datagram" and not 256 <= value <= 65_507:
                raise ValueError("must be between 256 and 65507")
            if key == "gcp_generation" and value not in (1, 2):
                raise ValueError("must be 1 or 2")
            if value < 0:
                raise ValueError("must be >= 0")
            return value
        if key == "memory_mb":
            return None if raw in (None, "") else _number(int, raw)
        if key == "cpu":
            return None if raw in (None, "") else _number(float, raw)
        if key in ("log_sample_rate", "tcp_timeout_s"):
            value_f = _number(float, raw)
            if key == "log_sample_rate" and not 0.0 <= value_f <= 1.0:
                raise ValueError("must be between 0 and 1")
            return value_f
        if key == "log_level":
            level = LEVEL_ALIASES.get(str(raw).strip().lower())
            if level is None:
                raise ValueError(f"one of {', '.join(LEVEL_NUMBERS)}")
            return level
        if key == "redact_keys":
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(k).strip().lower() for k in items if str(k).strip())
        if key == "prices":
            return dict(raw)
        if key == "endpoint":
            parse_endpoint(str(raw))
            return str(raw)
        if key == "hmac_key_id":
            key_id = str(raw)
            allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
            if not 1 <= len(key_id) <= 32 or not set(key_id) <= allowed:
                raise ValueError("1-32 of [A-Za-z0-9_.-]")
            return key_id
        return None if raw is None else str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{ENV_PREFIX}{key.upper()}: {exc}") from exc


def _number(kind: type[int] | type[float], raw: Any) -> Any:
    """A number from code (as ``kind()`` takes it) or from a variable's text."""
    if not isinstance(raw, str):
        return kind(raw)
    try:
        return kind(raw.strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"not {what}: {raw!r}") from None


# Settings where a variable set to nothing is a value (no key is redacted); for the
# others it counts as not set, as for the worker's booleans and numbers.
BLANK_IS_A_VALUE = frozenset({"redact_keys"})


LOOPBACK_DATAGRAM = 60_000
NETWORK_DATAGRAM = 1400


def datagram_size(config: ShipperConfig, host: str) -> int:
    """The packing target: the setting, else large on loopback (no fragmentation there)."""
    if config.max_datagram is not None:
        return config.max_datagram
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    return LOOPBACK_DATAGRAM if loopback else NETWORK_DATAGRAM


def environ() -> Mapping[str, str]:
    """The process environment, for the modules that derive facts from it (context)."""
    return os.environ


def parse_endpoint(endpoint: str) -> tuple[str, str, int]:
    """``udp://host:port`` or ``tcp://host:port`` -> (scheme, host, port)."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("udp", "tcp"):
        raise ConfigError(f"endpoint {endpoint!r}: expected udp://host:port or tcp://host:port")
    host, sep, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise ConfigError(f"endpoint {endpoint!r}: expected host:port")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"endpoint {endpoint!r}: bad port") from None
    if not 0 < port < 65536:
        raise ConfigError(f"endpoint {endpoint!r}: port out of range")
    return scheme, host, port


def load_config(
    environ: Mapping[str, str] | None = None, *, strict: bool = False, **overrides: Any
) -> ShipperConfig:
    """Settings from ``FAASLENS_*`` variables, then ``overrides``.

    A bad environment value is reported on stderr and ignored: instrumentation
    must never stop a function from running. With ``strict`` (a command line
    such as ``faaslens demo``, where a typo should stop the run) it raises
    :class:`ConfigError` naming the variable instead. Bad ``overrides`` always
    raise :class:`ConfigError` since they come from code the user is writing.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    def bad(message: str) -> None:
        if strict:
            raise ConfigError(message)
        print(f"faaslens: ignoring bad setting: {message}", file=sys.stderr)

    for key in ShipperConfig.__slots__:
        if key == "prices":
            continue
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is None and key == "service":
            raw = env.get("OTEL_SERVICE_NAME")
        if raw is None or (not raw.strip() and key not in BLANK_IS_A_VALUE):
            continue
        try:
            values[key] = _coerce(key, raw)
        except ConfigError as exc:
            bad(str(exc))
    prices: dict[str, Any] = {}
    for name in PRICE_ENV_KEYS:
        raw = env.get(f"{ENV_PREFIX}PRICE_{name.upper()}")
        if raw is None or not raw.strip():
            continue
        if name == "price_id":
            prices[name] = raw[:64]
            continue
        try:
            prices[name] = float(raw)
        except ValueError:
            bad(f"{ENV_PREFIX}PRICE_{name.upper()}: not a number: {raw!r}")
    if prices:
        values["prices"] = prices
    values.update(overrides)
    return ShipperConfig(**values)

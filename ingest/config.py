"""The worker's configuration: defaults < TOML file < FAASLENS_* environment < flags.

This is the only module that reads the environment or a config file; the
resulting :class:`IngestConfig` is passed down to every component.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import site
import sysconfig
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from faaslens.values import parse_bool

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "FAASLENS_"


def default_templates_dir() -> str:
    """The source tree's ``es-templates/``, else the copy a wheel installs under
    ``<prefix>/share/faaslens`` (system, virtualenv or ``--user``)."""
    candidates = [
        REPO_ROOT / "es-templates",
        Path(sysconfig.get_path("data")) / "share" / "faaslens" / "es-templates",
        Path(site.getuserbase()) / "share" / "faaslens" / "es-templates",
    ]
    found = next((c for c in candidates if c.is_dir()), candidates[0])
    return str(found)


class ConfigError(ValueError):
    """A configuration value that cannot be used, with the key that holds it."""


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Everything the worker can be told. Field names double as TOML keys,
    ``FAASLENS_<NAME>`` environment variables and ``--<name>`` flags."""

    # Sources: "host:port", empty string disables.
    udp_listen: str = "127.0.0.1:8518"
    tcp_listen: str = "127.0.0.1:8518"
    http_listen: str = "127.0.0.1:9108"
    # Kernel socket buffer: at 50k datagrams/s, 32 MiB (Linux allots twice that)
    # absorbs about a second of the receive thread being starved of CPU.
    udp_rcvbuf: int = 32 * 1024 * 1024
    max_frame_bytes: int = 1024 * 1024
    # SO_REUSEPORT on the UDP and TCP sockets, so several workers can share a port.
    reuse_port: bool = False
    # Signing: key id -> secret. Signed frames are always verified.
    hmac_keys: dict[str, str] = field(default_factory=dict)
    require_signature: bool = False
    # Elasticsearch
    es_url: str = "http://127.0.0.1:9200"
    es_index_prefix: str = "faaslens"
    es_templates_dir: str = field(default_factory=default_templates_dir)
    es_request_timeout_s: float = 30.0
    es_shards: int = 1
    es_replicas: int = 0
    # Batching and queues
    batch_max_docs: int = 2000
    batch_max_bytes: int = 5 * 1024 * 1024
    batch_max_wait_s: float = 0.5
    queue_max: int = 200_000
    # Bytes of frames waiting for validation, at most (bounds memory whatever the frame size).
    queue_max_bytes: int = 64 * 1024 * 1024
    # Retries, spool, dead letters
    retry_base_s: float = 0.1
    retry_max_s: float = 10.0
    es_retry_window_s: float = 5.0  # seconds of bulk retries before a batch goes to the spool
    spool_dir: str = "var/spool"
    spool_max_bytes: int = 1024 * 1024 * 1024
    dead_letter_path: str = "var/dead-letter.ndjson"
    # Retention housekeeping (daily indices older than this are deleted)
    retention_days: int = 7
    retention_interval_s: float = 3600.0
    # Prometheus aggregates
    series_cap: int = 10_000
    series_ttl_s: float = 900.0
    # Distinct custom metric names (faas_custom_*) kept at most; further names are rejected.
    custom_metrics_cap: int = 1000
    # Where documents go: "elasticsearch", or "null" (discarded: benchmarks, metrics-only runs)
    sink: str = "elasticsearch"
    # Lifecycle
    shutdown_timeout_s: float = 30.0
    log_level: str = "info"


_FIELDS = {f.name: f for f in fields(IngestConfig)}
_DEFAULTS = IngestConfig()  # their types tell _coerce what a raw value must become


def _coerce(name: str, raw: Any) -> Any:
    """Turn a TOML / env / flag value into the field's type, or raise ConfigError."""
    default = getattr(_DEFAULTS, name)
    try:
        if isinstance(default, bool):
            return parse_bool(raw, default)
        if isinstance(default, int):
            if isinstance(raw, bool):
                raise ValueError("boolean where an integer is expected")
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, dict):
            return _parse_keys(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _parse_keys(raw: Any) -> dict[str, str]:
    """HMAC keys as a TOML table or as ``id1=secret1,id2=secret2``."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    keys: dict[str, str] = {}
    for part in str(raw).split(","):
        if not part.strip():
            continue
        key_id, sep, secret = part.partition("=")
        if not sep or not key_id.strip() or not secret:
            raise ValueError("expected key_id=secret[,key_id=secret]")
        keys[key_id.strip()] = secret
    return keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and one ``--<name>`` flag per field (all default to None)."""
    parser.add_argument("--config", help="TOML file (keys as the field names, or under [ingest])")
    for f in fields(IngestConfig):
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar="VALUE"
        )


def load_config(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> IngestConfig:
    """Merge defaults, the TOML file, ``FAASLENS_*`` variables and flags."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = (
        config_file
        or (getattr(args, "config", None) if args else None)
        or env.get(ENV_PREFIX + "CONFIG")
    )
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        table = data.get("ingest", data)
        for key, raw in table.items():
            if key not in _FIELDS:
                raise ConfigError(f"config file {path}: unknown key {key!r}")
            values[key] = _coerce(key, raw)
    for name in _FIELDS:
        raw_env = env.get(ENV_PREFIX + name.upper())
        if raw_env is not None:
            values[name] = _coerce(name, raw_env)
    if args is not None:
        for name in _FIELDS:
            raw_flag = getattr(args, name, None)
            if raw_flag is not None:
                values[name] = _coerce(name, raw_flag)
    return dataclasses.replace(IngestConfig(), **values)


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"host:port"`` / ``":port"`` / ``"[::1]:port"`` -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ConfigError(f"expected host:port, got {value!r}")
    host = host.strip("[]") or default_host
    try:
        return host, int(port)
    except ValueError as exc:
        raise ConfigError(f"bad port in {value!r}") from exc


def config_from_argv(argv: Sequence[str], prog: str) -> tuple[argparse.Namespace, IngestConfig]:
    """Parse flags for a subcommand and build its config."""
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    return args, load_config(args)

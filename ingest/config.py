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
from typing import TYPE_CHECKING, Any

from faaslens.values import parse_bool

if TYPE_CHECKING:
    from faaslens.ingest.sink_es.connection import Connection

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


def default_state_dir() -> str:
    """Where the spool and the dead-letter file live when not set: the same wherever the
    worker is started from. ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``), else
    ``$XDG_STATE_HOME/faaslens``, else ``~/.local/state/faaslens``."""
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return systemd
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(xdg) / "faaslens")


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
    # prometheus-aggregator lines (TCP and UDP on this one address); empty: off.
    lines_listen: str = ""
    # The aggregator's declaration.json (metrics the lines may name); empty: none.
    lines_declarations: str = ""
    # Kernel socket buffer: at 50k datagrams/s, 32 MiB (Linux allots twice that)
    # absorbs about a second of the receive thread being starved of CPU.
    udp_rcvbuf: int = 32 * 1024 * 1024
    max_frame_bytes: int = 1024 * 1024
    # SO_REUSEPORT on the UDP and TCP sockets, so several workers can share a port.
    reuse_port: bool = False
    # Signing: key id -> secret. Signed frames are always verified.
    hmac_keys: dict[str, str] = field(default_factory=dict, repr=False)
    require_signature: bool = False
    # Elasticsearch
    es_url: str = "http://127.0.0.1:9200"
    es_index_prefix: str = "faaslens"
    es_templates_dir: str = field(default_factory=default_templates_dir)
    es_request_timeout_s: float = 30.0
    es_shards: int = 1
    es_replicas: int = 0
    # Security (see ingest/sink_es/connection.py): TLS is verified unless told otherwise.
    es_ca_certs: str = ""  # PEM file of the CA that signed the nodes' certificates
    es_cert_fingerprint: str = ""  # or pin the node's certificate: SHA-256, hex
    es_verify_certs: bool = True
    es_username: str = ""
    es_password: str = field(default="", repr=False)
    es_password_file: str = ""  # read at load; keeps the secret out of flags and env
    es_api_key: str = field(default="", repr=False)  # the "encoded" value
    es_api_key_file: str = ""
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
    # State (spool, dead letters): one directory per worker; empty paths derive from it.
    state_dir: str = field(default_factory=default_state_dir)
    spool_dir: str = ""  # default <state_dir>/spool; owned by one worker at a time (a lock)
    spool_max_bytes: int = 1024 * 1024 * 1024
    dead_letter_path: str = ""  # default <state_dir>/dead-letter.ndjson
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

    def __post_init__(self) -> None:
        # Derived state paths, so every component sees real paths.
        if not self.spool_dir:
            object.__setattr__(self, "spool_dir", str(Path(self.state_dir) / "spool"))
        if not self.dead_letter_path:
            path = str(Path(self.state_dir) / "dead-letter.ndjson")
            object.__setattr__(self, "dead_letter_path", path)


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
        if isinstance(raw, list):  # e.g. es_url = ["https://a:9200", "https://b:9200"]
            return ",".join(str(item) for item in raw)
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


# The options that say how to reach Elasticsearch: commands other than the worker
# (``faaslens query``) take these flags and read them the worker's way.
CONNECTION_FIELDS = (
    "es_ca_certs",
    "es_cert_fingerprint",
    "es_verify_certs",
    "es_username",
    "es_password_file",
    "es_api_key_file",
)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--es-ca-certs`` ... ``--es-api-key-file`` (secrets only as file paths)."""
    for name in CONNECTION_FIELDS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, metavar="VALUE")


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
    for secret in ("es_password", "es_api_key"):
        if values.get(secret + "_file"):
            if values.get(secret):
                raise ConfigError(f"give {secret} or {secret}_file, not both")
            values[secret] = _read_secret(secret + "_file", values[secret + "_file"])
    for derived in ("spool_dir", "dead_letter_path"):
        values.setdefault(derived, "")  # a state_dir given here moves them too
    config = dataclasses.replace(IngestConfig(), **values)
    return _with_connection_checked(config)


def _read_secret(name: str, path: str) -> str:
    """A secret file's content without the trailing newline; the error names the file only."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{name} {path}: cannot read it ({reason})") from None


def _with_connection_checked(config: IngestConfig) -> IngestConfig:
    """Check the Elasticsearch options together; credentials move out of ``es_url``."""
    from faaslens.ingest.sink_es.connection import split_nodes

    try:
        conn = connection(config)
        if config.es_ca_certs and not os.access(config.es_ca_certs, os.R_OK):
            raise ValueError(f"es_ca_certs {config.es_ca_certs}: no readable file there")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    nodes, _, _ = split_nodes(config.es_url)
    return dataclasses.replace(
        config,
        es_url=",".join(nodes),
        es_username=conn.username,
        es_password=conn.password,
        es_password_file="",
        es_api_key=conn.api_key,
        es_api_key_file="",
    )


def connection(config: IngestConfig) -> Connection:
    """The connection settings of ``config`` (see :mod:`~faaslens.ingest.sink_es.connection`).

    Raises:
        ValueError: conflicting or incomplete options.
    """
    from faaslens.ingest.sink_es.connection import settings

    return settings(
        config.es_url,
        username=config.es_username,
        password=config.es_password,
        api_key=config.es_api_key,
        ca_certs=config.es_ca_certs,
        fingerprint=config.es_cert_fingerprint,
        verify_certs=config.es_verify_certs,
    )


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

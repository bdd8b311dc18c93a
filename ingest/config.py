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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faaslens.commandline import Parser
from faaslens.ingest.buckets import check_bounds
from faaslens.protocol import LEVEL_NUMBERS
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


# Which commands read a setting (``--help`` of each lists only its own).
WORKER = frozenset({"ingest"})
ES_CLIENT = frozenset({"ingest", "setup", "query"})  # talking to Elasticsearch
ES_SETUP = frozenset({"ingest", "setup"})  # installing the templates
MIB = 1024 * 1024


def about(
    help: str,
    unit: str = "",
    *,
    used_by: frozenset[str] = WORKER,
    check: Callable[[Any], None] | None = None,
    shown: str | None = None,
    metavar: str | None = None,
) -> dict[str, Any]:
    """A field's metadata: what ``--help`` says of it and how a value is checked.

    ``unit``: seconds, bytes, ... (empty for words and paths). ``used_by``: the
    commands that read it. ``check`` raises ValueError for a value of the right
    type that cannot be used. ``shown``: how ``--help`` states the default when
    the value itself would not do. ``metavar``: the placeholder in ``--help``
    (else the unit, else N for numbers and VALUE).
    """
    return {
        "help": help,
        "unit": unit,
        "used_by": used_by,
        "check": check,
        "shown": shown,
        "metavar": metavar,
    }


def setting(default: Any, help: str, unit: str = "", **more: Any) -> Any:
    """A config field with a plain default and :func:`about` metadata."""
    return field(default=default, metadata=about(help, unit, **more))


def secret(help: str, metavar: str) -> Any:
    """A credential for Elasticsearch: empty by default, never in ``repr`` (logs)."""
    meta = about(help, used_by=ES_CLIENT, shown="none", metavar=metavar)
    return field(default="", repr=False, metadata=meta)


def _at_least(low: float) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value < low:
            raise ValueError(f"must be at least {low:g}, got {value!r}")

    return check


def _positive(value: Any) -> None:
    if not value > 0:
        raise ValueError(f"must be more than 0, got {value!r}")


def _one_of(*choices: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")

    return check


def _listen(value: Any) -> None:
    if value:
        parse_hostport(value)


def _http_urls(value: Any) -> None:
    """One ``http(s)://host[:port][/path]`` URL or several, comma-separated (the nodes of
    one cluster); a password in a URL is never repeated in the error."""
    from faaslens.ingest.sink_es.connection import split_nodes

    split_nodes(value)


_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


def _index_prefix(value: Any) -> None:
    """Elasticsearch's index name rules, for the part we are given."""
    if (
        not value
        or value != value.lower()
        or value[0] in "-_+"
        or _INDEX_FORBIDDEN & set(value)
        or len(value.encode()) > 200
    ):
        raise ValueError(
            f"not usable in an index name: {value!r} (lowercase, no spaces or "
            '\\/*?"<>|,#:, not starting with -_+, at most 200 bytes)'
        )


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Everything the worker can be told. Field names double as TOML keys,
    ``FAASLENS_<NAME>`` environment variables and ``--<name>`` flags; each
    field's metadata gives its help text, unit and the commands that read it."""

    udp_listen: str = setting(
        "127.0.0.1:8518",
        "host:port receiving frames over UDP; empty disables",
        check=_listen,
        metavar="HOST:PORT",
    )
    tcp_listen: str = setting(
        "127.0.0.1:8518",
        "host:port receiving frames over TCP; empty disables",
        check=_listen,
        metavar="HOST:PORT",
    )
    http_listen: str = setting(
        "127.0.0.1:9108",
        "host:port serving /metrics, /healthz, /readyz; empty disables",
        check=_listen,
        metavar="HOST:PORT",
    )
    lines_listen: str = setting(
        "",
        "host:port receiving prometheus-aggregator lines (TCP and UDP on this one "
        "address); empty: off",
        check=_listen,
        metavar="HOST:PORT",
    )
    lines_declarations: str = setting(
        "",
        "the aggregator's declaration.json (metrics the lines may name); empty: none",
        metavar="FILE",
    )
    # Memory bounds of the line listener's TCP side (ingest/tcp_lines.py); its lines are
    # short (a few hundred bytes), at most 64 KiB each.
    lines_max_connections: int = setting(
        1024,
        "line listener TCP connections open at once; more are closed at once (counted)",
        "connections",
        check=_at_least(1),
    )
    lines_max_buffered_bytes: int = setting(
        16 * MIB,
        "bytes of unfinished lines over all line listener TCP connections; past it the "
        "connection holding the most is closed (counted)",
        "bytes",
        check=_at_least(65_536),
    )
    lines_idle_timeout_s: float = setting(
        300.0,
        "a line listener TCP connection silent, or leaving a line unfinished, this long "
        "is closed (counted)",
        "seconds",
        check=_positive,
    )
    http_write_timeout_s: float = setting(
        10.0,
        "a /metrics response not written within this is aborted (Prometheus' default "
        "scrape timeout)",
        "seconds",
        check=_positive,
    )
    http_max_connections: int = setting(
        64, "HTTP connections open at once; one more is answered 503", check=_at_least(1)
    )
    # At 50k datagrams/s, 32 MiB (Linux allots twice that) absorbs about a second of
    # the receive thread being starved of CPU.
    udp_rcvbuf: int = setting(
        32 * MIB,
        "kernel receive buffer asked for the UDP socket (capped by net.core.rmem_max unless root)",
        "bytes",
        check=_at_least(4096),
    )
    max_frame_bytes: int = setting(
        MIB, "largest frame accepted; larger ones are rejected", "bytes", check=_at_least(1024)
    )
    # TCP memory bounds (ingest/tcp_lines.py).
    tcp_max_connections: int = setting(
        1024,
        "open TCP connections, at most; one past it is closed at once (counted)",
        "connections",
        check=_at_least(1),
    )
    tcp_max_buffered_bytes: int = setting(
        64 * MIB,
        "bytes of unfinished lines over all TCP connections, at most; past it the "
        "connection holding the longest is closed (counted)",
        "bytes",
        check=_at_least(1024),
    )
    tcp_idle_timeout_s: float = setting(
        300.0,
        "a TCP connection silent this long, or leaving a line unfinished this long, is "
        "closed (counted)",
        "seconds",
        check=_positive,
    )
    reuse_port: bool = setting(
        False, "SO_REUSEPORT on the UDP and TCP sockets, so several workers share a port"
    )
    hmac_keys: dict[str, str] = field(
        default_factory=dict,
        repr=False,  # secrets
        metadata=about(
            "keys that verify signed frames, as key_id=secret[,key_id=secret] "
            "(a table in the config file)",
            metavar="ID=SECRET,...",
            shown="none",
        ),
    )
    require_signature: bool = setting(False, "reject frames that are not signed")
    signature_max_age_s: float = setting(
        60.0,
        "a frame signed with a time (s2) further than this from the worker's clock, "
        "either way, is rejected as stale (replays)",
        "seconds",
        check=_positive,
    )
    timestamp_max_age_s: float = setting(
        7 * 86_400.0,
        "events dated further in the past are rejected (bad_timestamp): a bounded number "
        "of daily indices; keep it at or under retention_days; 0: no bound",
        "seconds",
        check=_at_least(0),
    )
    timestamp_max_ahead_s: float = setting(
        900.0,
        "events dated further ahead of the worker's clock are rejected; 0: no bound",
        "seconds",
        check=_at_least(0),
    )
    dedupe_window_s: float = setting(
        180.0,
        "an invocation record (same id and start) seen again within this is aggregated once",
        "seconds",
        check=_positive,
    )
    dedupe_max_keys: int = setting(
        250_000,
        "records remembered per half window (~64 bytes each); more shorten the window",
        "records",
        check=_at_least(1),
    )
    es_url: str = setting(
        "http://127.0.0.1:9200",
        "Elasticsearch URL, or the nodes of one cluster comma-separated (a TOML list in "
        "the file); credentials written in it are moved out of it",
        used_by=ES_CLIENT,
        check=_http_urls,
        metavar="URL[,URL...]",
    )
    es_index_prefix: str = setting(
        "faaslens",
        "indices are <prefix>-<kind>-YYYY.MM.DD",
        used_by=ES_CLIENT,
        check=_index_prefix,
        metavar="PREFIX",
    )
    es_templates_dir: str = field(
        default_factory=default_templates_dir,
        metadata=about(
            "folder of the index and component templates installed at start",
            used_by=ES_SETUP,
            metavar="DIR",
            shown="the source tree's es-templates/, else <prefix>/share/faaslens/es-templates",
        ),
    )
    es_request_timeout_s: float = setting(
        30.0,
        "timeout of one Elasticsearch request",
        "seconds",
        used_by=ES_CLIENT,
        check=_positive,
    )
    # Security (ingest/sink_es/connection.py; docs/deploy.md): TLS is verified by default.
    es_ca_certs: str = setting(
        "",
        "PEM file of the CA that signed the nodes' HTTP certificates; empty: the system's CAs",
        used_by=ES_CLIENT,
        metavar="FILE",
    )
    es_cert_fingerprint: str = setting(
        "",
        "instead of a CA: SHA-256 fingerprint of the node's own HTTP certificate (hex)",
        used_by=ES_CLIENT,
        metavar="HEX",
    )
    es_verify_certs: bool = setting(
        True, "verify the nodes' TLS certificates (off: logged as a warning)", used_by=ES_CLIENT
    )
    es_username: str = setting(
        "", "basic auth user (with es_password)", used_by=ES_CLIENT, metavar="USER"
    )
    es_password: str = secret(
        "basic auth password; prefer es_password_file or the environment (flags show in ps)",
        metavar="PASSWORD",
    )
    es_password_file: str = setting(
        "", "file holding the basic auth password", used_by=ES_CLIENT, metavar="FILE"
    )
    es_api_key: str = secret(
        "API key: the 'encoded' value of POST /_security/api_key; prefer es_api_key_file",
        metavar="KEY",
    )
    es_api_key_file: str = setting(
        "", "file holding the API key", used_by=ES_CLIENT, metavar="FILE"
    )
    es_shards: int = setting(
        1, "primary shards of each daily index", used_by=ES_SETUP, check=_at_least(1)
    )
    es_replicas: int = setting(
        0, "replicas of each daily index", used_by=ES_SETUP, check=_at_least(0)
    )
    batch_max_docs: int = setting(
        2000, "documents in one bulk request, at most", "documents", check=_at_least(1)
    )
    batch_max_bytes: int = setting(
        5 * MIB, "size of one bulk request body, at most", "bytes", check=_at_least(1024)
    )
    batch_max_wait_s: float = setting(
        0.5, "a partial batch is sent after this long", "seconds", check=_positive
    )
    queue_max: int = setting(
        200_000,
        "frames waiting for validation, at most (then dropped, counted)",
        "frames",
        check=_at_least(1),
    )
    queue_max_bytes: int = setting(
        64 * MIB,
        "bytes of frames waiting for validation, at most (bounds memory whatever the frame size)",
        "bytes",
        check=_at_least(1024),
    )
    retry_base_s: float = setting(
        0.1,
        "first backoff of a retried bulk request (doubles, jittered)",
        "seconds",
        check=_positive,
    )
    retry_max_s: float = setting(10.0, "longest backoff", "seconds", check=_positive)
    es_retry_window_s: float = setting(
        5.0,
        "bulk retries last this long before a batch goes to the spool",
        "seconds",
        check=_at_least(0),
    )
    es_doc_max_attempts: int = setting(
        10,
        "a document Elasticsearch refuses on its own (403, 5xx) is dead-lettered after "
        "this many refusals, once es_doc_deadline_s has passed too",
        "attempts",
        check=_at_least(1),
    )
    es_doc_deadline_s: float = setting(
        900.0,
        "how long a document refused on its own is retried at least (it waits behind "
        "the rest of the spool meanwhile)",
        "seconds",
        check=_at_least(0),
    )
    state_dir: str = field(
        default_factory=default_state_dir,
        metadata=about(
            "the worker's own state (spool, dead letters); one worker per directory",
            metavar="DIR",
            shown="$STATE_DIRECTORY, else $XDG_STATE_HOME/faaslens, else ~/.local/state/faaslens",
        ),
    )
    spool_dir: str = setting(
        "",
        "disk buffer while Elasticsearch is away; one worker owns it (a lock)",
        metavar="DIR",
        shown="<state_dir>/spool",
    )
    spool_max_bytes: int = setting(
        1024 * MIB, "disk the spool may use, at most", "bytes", check=_at_least(MIB)
    )
    dead_letter_path: str = setting(
        "",
        "file of documents Elasticsearch refused (400), with the reason",
        metavar="FILE",
        shown="<state_dir>/dead-letter.ndjson",
    )
    retention_days: int = setting(
        7, "daily indices older than this are deleted", "days", check=_at_least(1)
    )
    retention_interval_s: float = setting(
        3600.0, "how often retention runs", "seconds", check=_positive
    )
    series_cap: int = setting(
        10_000,
        "label sets per metric, at most; more go to an overflow series (counted)",
        "series",
        check=_at_least(1),
    )
    series_ttl_s: float = setting(
        900.0, "a series not updated for this long is removed", "seconds", check=_positive
    )
    custom_metrics_cap: int = setting(
        1000,
        "distinct custom metric names (faas_custom_*), at most; more are rejected",
        "names",
        check=_at_least(1),
    )
    custom_histogram_buckets: dict[str, tuple[float, ...]] = field(
        default_factory=dict,
        metadata=about(
            "bucket upper bounds per custom histogram name, in its samples' unit, as "
            "name=b1,b2[;name=...] (a table of lists in the file); others follow their "
            "unit (faaslens.protocol.histogram_buckets)",
            metavar="NAME=B1,B2;...",
            shown="by unit",
        ),
    )
    unfinished_grace_s: float = setting(
        10.0,
        "a started invocation whose record has not come by its timeout plus this is "
        "settled as unfinished",
        "seconds",
        check=_at_least(0),
    )
    unfinished_default_timeout_s: float = setting(
        900.0,
        "the timeout of a start that carries none (Azure, GCP, plain processes); "
        "AWS Lambda's longest",
        "seconds",
        check=_positive,
    )
    pending_max: int = setting(
        100_000,
        "started invocations tracked at most (~0.7 KB each, bench/pending_memory.py); "
        "more are counted in faaslens_pending_overflow_total and not settled",
        "invocations",
        check=_at_least(1),
    )
    pending_state_path: str = setting(
        "var/pending-state.json",
        "the pending starts are saved here on a graceful stop and read back on start",
        metavar="FILE",
    )
    sink: str = setting(
        "elasticsearch",
        "where documents go: elasticsearch, or null (discarded: benchmarks, metrics only)",
        check=_one_of("elasticsearch", "null"),
        metavar="{elasticsearch,null}",
    )
    shutdown_timeout_s: float = setting(
        30.0,
        "on SIGTERM, time to drain what is held before exiting",
        "seconds",
        check=_positive,
    )
    log_level: str = setting(
        "info",
        "the worker's log level",
        check=_one_of(*LEVEL_NUMBERS),
        metavar="{" + ",".join(LEVEL_NUMBERS) + "}",
    )

    def __post_init__(self) -> None:
        # Derived state paths, so every component sees real paths.
        if not self.spool_dir:
            object.__setattr__(self, "spool_dir", str(Path(self.state_dir) / "spool"))
        if not self.dead_letter_path:
            path = str(Path(self.state_dir) / "dead-letter.ndjson")
            object.__setattr__(self, "dead_letter_path", path)


_FIELDS = {f.name: f for f in fields(IngestConfig)}
_DEFAULTS = IngestConfig()  # their types tell _coerce what a raw value must become
COMMANDS = ("ingest", "setup", "query")


def fields_for(command: str) -> list[str]:
    """The settings ``command`` reads, in declaration order."""
    return [name for name, f in _FIELDS.items() if command in f.metadata["used_by"]]


def flag(name: str) -> str:
    """The command-line flag of a setting: ``es_url`` -> ``--es-url``."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """The environment variable of a setting: ``es_url`` -> ``FAASLENS_ES_URL``."""
    return ENV_PREFIX + name.upper()


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn a TOML / env / flag value into the field's type and check it.

    Raises:
        ConfigError: naming the source (flag, variable or file) and the setting.
    """
    default = getattr(_DEFAULTS, name)
    try:
        value: Any
        if isinstance(default, bool):
            value = parse_bool(raw, default)
        elif isinstance(default, int):
            if isinstance(raw, bool):
                raise ValueError("boolean where an integer is expected")
            value = _number(int, raw, "an integer")
        elif isinstance(default, float):
            if isinstance(raw, bool):
                raise ValueError("boolean where a number is expected")
            value = _number(float, raw, "a number")
        elif name == "custom_histogram_buckets":
            value = _parse_buckets(raw)
        elif isinstance(default, dict):
            value = _parse_keys(raw)
        elif isinstance(raw, list):  # es_url = ["https://a:9200", "https://b:9200"]
            value = ",".join(str(item) for item in raw)
        else:
            value = str(raw)
        check = _FIELDS[name].metadata["check"]
        if check is not None:
            check(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return value


def _blank_is_unset(name: str) -> bool:
    """Whether a variable set to nothing (``FAASLENS_X=``) counts as not set: for
    booleans and numbers, which have no empty value, so that the file's value or the
    default stays. For text an empty value is a value (``FAASLENS_UDP_LISTEN=``
    disables UDP)."""
    return isinstance(getattr(_DEFAULTS, name), bool | int | float)


def _number(kind: Callable[[Any], Any], raw: Any, what: str) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"not {what}: {raw!r}") from None


def _parse_buckets(raw: Any) -> dict[str, tuple[float, ...]]:
    """Histogram bounds per metric name, as a TOML table or ``name=b1,b2;name2=...``."""
    if isinstance(raw, Mapping):
        items = [(str(k), v if isinstance(v, list | tuple) else [v]) for k, v in raw.items()]
    else:
        items = []
        for part in str(raw).split(";"):
            if not part.strip():
                continue
            name, sep, bounds = part.partition("=")
            if not sep or not name.strip():
                raise ValueError("expected name=bound,bound[;name=bound,...]")
            items.append((name.strip(), bounds.split(",")))
    return {name: check_bounds(float(b) for b in bounds) for name, bounds in items}


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


def _describe(name: str) -> str:
    """One option's help: meaning, unit, default and environment variable."""
    meta = _FIELDS[name].metadata
    default = getattr(_DEFAULTS, name)
    shown = meta["shown"]
    if shown is None:
        if isinstance(default, bool):
            shown = "on" if default else "off"
        elif isinstance(default, int) and default >= MIB and default % MIB == 0:
            shown = f"{default} ({default // MIB} MiB)"
        else:
            shown = repr(default) if isinstance(default, str) else f"{default:g}"
    unit = f"; {meta['unit']}" if meta["unit"] else ""
    return f"{meta['help']}{unit}; default {shown}; env {env_name(name)}".replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser, command: str = "ingest") -> None:
    """Add ``--config`` and one flag per setting ``command`` reads.

    Flags default to None (a flag given overrides the file and the environment);
    booleans are ``--x`` / ``--no-x``.
    """
    group = parser.add_argument_group(
        "settings (each also a FAASLENS_<NAME> variable and a --config file key; "
        "a flag wins over a variable, a variable over the file)"
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file: keys as the setting names, at top level or under [ingest] "
        "(default: $FAASLENS_CONFIG, else none)",
    )
    for name in fields_for(command):
        default = getattr(_DEFAULTS, name)
        if isinstance(default, bool):
            group.add_argument(
                flag(name),
                dest=name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=_describe(name),
            )
        else:
            meta = _FIELDS[name].metadata
            numeric = isinstance(default, int | float)
            metavar = meta["metavar"] or (meta["unit"] or ("n" if numeric else "value")).upper()
            group.add_argument(
                flag(name), dest=name, default=None, metavar=metavar, help=_describe(name)
            )


def load_config(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    command: str = "ingest",
) -> IngestConfig:
    """Merge defaults, the TOML file, ``FAASLENS_*`` variables and flags.

    Only the settings ``command`` reads are taken from the environment and the
    flags (a worker's variables do not trouble ``faaslens query``); the file's
    keys must all be settings.

    Raises:
        ConfigError: a value that cannot be used, naming where it came from.
    """
    env = os.environ if environ is None else environ
    names = fields_for(command)
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
            if key in names:
                values[key] = _coerce(key, raw, f"config file {path}: {key}")
    for name in names:
        raw_env = env.get(env_name(name))
        if raw_env is None or (not raw_env.strip() and _blank_is_unset(name)):
            continue
        values[name] = _coerce(name, raw_env, env_name(name))
    if args is not None:
        for name in names:
            raw_flag = getattr(args, name, None)
            if raw_flag is not None:
                values[name] = _coerce(name, raw_flag, flag(name))
    for secret in ("es_password", "es_api_key"):
        if values.get(secret + "_file"):
            if values.get(secret):
                raise ConfigError(f"give {secret} or {secret}_file, not both")
            values[secret] = _read_secret(secret + "_file", values[secret + "_file"])
    for derived in ("spool_dir", "dead_letter_path"):
        values.setdefault(derived, "")  # a state_dir given here moves them too
    return _with_connection_checked(dataclasses.replace(IngestConfig(), **values))


def _read_secret(name: str, path: str) -> str:
    """A secret file's content without the trailing newline; the error names the file only."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{name} {path}: cannot read it ({reason})") from None


def _with_connection_checked(config: IngestConfig) -> IngestConfig:
    """Check the Elasticsearch options together; credentials move out of ``es_url``."""
    try:
        conn = connection(config)
        if config.es_ca_certs and not os.access(config.es_ca_certs, os.R_OK):
            raise ValueError(f"es_ca_certs {config.es_ca_certs}: no readable file there")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return dataclasses.replace(
        config,
        es_url=conn.endpoint,
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
    """``"host:port"`` / ``":port"`` / ``"[::1]:port"`` -> (host, port).

    Raises:
        ConfigError: no port, or one that is not a number in 0..65535.
    """
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ConfigError(f"expected host:port, got {value!r}")
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError as exc:
        raise ConfigError(f"bad port in {value!r}") from exc
    if not 0 <= number <= 65535:
        raise ConfigError(f"port out of range in {value!r}")
    return host, number


def command_parser(command: str, description: str) -> argparse.ArgumentParser:
    """A parser for ``faaslens <command>`` with its settings' flags (one-line errors)."""
    parser = Parser(prog=f"faaslens {command}", description=description)
    add_arguments(parser, command)
    return parser


def config_from_argv(
    argv: Sequence[str], command: str, description: str
) -> tuple[argparse.Namespace, IngestConfig]:
    """Parse flags for a subcommand and build its config.

    Raises:
        ConfigError: a value that cannot be used. Bad flags exit (status 2).
    """
    args = command_parser(command, description).parse_args(list(argv))
    return args, load_config(args, command=command)

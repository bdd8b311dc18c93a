"""The Elasticsearch clients the sink, ``faaslens setup``, ``faaslens query`` and
retention share, and what their failures mean in one line.

The factories build every client from :class:`~faaslens.ingest.config.IngestConfig`
through :func:`~faaslens.ingest.config.connection`, so every command talks to
the same nodes with the same TLS settings and credentials.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from elastic_transport import ConnectionError as EsConnectionError
from elastic_transport import ConnectionTimeout, TlsError, TransportError
from elasticsearch import ApiError, AsyncElasticsearch, Elasticsearch

from faaslens.ingest.config import IngestConfig, connection

ClientFactory = Callable[[IngestConfig], AsyncElasticsearch]

# A health probe must answer quickly or count as down.
PROBE_TIMEOUT_S = 5.0


def make_client(
    config: IngestConfig, client_class: type[AsyncElasticsearch] = AsyncElasticsearch
) -> AsyncElasticsearch:
    """The worker's client: orjson for responses; past moving on to the next node of a
    cluster, retries are the sink's own (retry window, then the spool).

    ``client_class`` lets tests wrap the real client to inject faults.

    Raises:
        ValueError: the connection options do not fit together, or the client refuses them.
    """
    from elasticsearch.serializer import OrjsonSerializer

    serializer = OrjsonSerializer()
    return client_class(
        **connection(config).client_options(),
        request_timeout=config.es_request_timeout_s,
        http_compress=False,  # loopback or LAN: compression costs more CPU than it saves
        serializers={
            "application/json": serializer,
            "application/vnd.elasticsearch+json": serializer,
        },
    )


def make_sync_client(config: IngestConfig, timeout_s: float) -> Elasticsearch:
    """The blocking client of ``faaslens query``: the same nodes, TLS and credentials.

    Raises:
        ValueError: as :func:`make_client`.
    """
    return Elasticsearch(**connection(config).client_options(), request_timeout=timeout_s)


def explain(exc: BaseException, endpoint: str) -> tuple[str, str]:
    """``(reason, line)`` for a failed request: a bounded reason (``authentication``,
    ``authorization``, ``tls``, ``timeout``, ``connection``, ``http``, ``transport``)
    and one line that says what went wrong and what to change. Never holds a secret:
    ``endpoint`` is the credential-free node list, and Elasticsearch's answers name
    the user at most.
    """
    if isinstance(exc, ApiError):
        return _explain_answer(exc, endpoint)
    if isinstance(exc, TlsError) or _cause(exc, ssl.SSLError) is not None:
        return "tls", f"TLS with Elasticsearch at {endpoint} failed: {_tls_detail(exc)}"
    if _cause(exc, _fingerprint_mismatch()) is not None:
        return "tls", (
            f"TLS with Elasticsearch at {endpoint} failed: the node's certificate does not "
            "match es_cert_fingerprint (SHA-256 of the node's own certificate)"
        )
    if isinstance(exc, ConnectionTimeout):
        return "timeout", f"Elasticsearch at {endpoint} did not answer in time"
    if isinstance(exc, EsConnectionError | OSError):
        return "connection", f"cannot reach Elasticsearch at {endpoint}: {_innermost(exc)}"
    if isinstance(exc, TransportError):
        return "transport", f"Elasticsearch at {endpoint}: {_innermost(exc)}"
    return "transport", f"Elasticsearch at {endpoint}: {type(exc).__name__}: {exc}"


def _explain_answer(exc: ApiError, endpoint: str) -> tuple[str, str]:
    status = exc.meta.status
    error: Any = exc.body.get("error") if isinstance(exc.body, dict) else None
    reason = str(error.get("reason", "")) if isinstance(error, dict) else str(exc.message)
    if status == 401:
        extra = str(error.get("additional_unsuccessful_credentials", "")) if error else ""
        if "expired" in extra:
            why = "the API key has expired (es_api_key): make a new one"
        elif extra.startswith("API key"):
            why = f"the API key was refused ({extra.split(': ', 1)[-1]}): check es_api_key"
        elif "authenticate user" in reason:
            why = f"{reason}: check es_username and es_password"
        else:
            why = f"{reason}: set es_username and es_password, or es_api_key"
        return "authentication", f"Elasticsearch at {endpoint} refused the credentials: {why}"
    if status == 403:
        return "authorization", f"Elasticsearch at {endpoint} denied a privilege: {reason}"
    kind = error.get("type", exc.message) if isinstance(error, dict) else exc.message
    return "http", f"Elasticsearch at {endpoint} answered HTTP {status}: {kind}: {reason}"


def _cause(exc: BaseException, kind: type[BaseException] | None) -> BaseException | None:
    """The first exception of type ``kind`` in ``exc``'s cause/context chain."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10 and kind is not None:
        if isinstance(current, kind):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _innermost(exc: BaseException) -> str:
    current = exc
    for _ in range(10):
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    return str(current) or type(current).__name__


def _tls_detail(exc: BaseException) -> str:
    current: BaseException | None = exc
    for _ in range(10):  # aiohttp's wrapper is an SSLCertVerificationError without the message
        if current is None:
            break
        message = getattr(current, "verify_message", None)
        if message:
            return (
                f"certificate verify failed: {message}; set es_ca_certs to the CA "
                "that signed the node's certificate (or es_cert_fingerprint to pin it)"
            )
        current = current.__cause__ or current.__context__
    return _innermost(exc)


def _fingerprint_mismatch() -> type[BaseException] | None:
    try:
        from aiohttp import ServerFingerprintMismatch
    except ImportError:  # the sync client does not need aiohttp
        return None
    return ServerFingerprintMismatch


async def probe(client: AsyncElasticsearch) -> None:
    """One cheap request that Elasticsearch answers when it can take writes.

    Raises:
        elasticsearch.ApiError, elastic_transport.TransportError, OSError: it cannot.
    """
    await client.options(request_timeout=PROBE_TIMEOUT_S).cluster.health()

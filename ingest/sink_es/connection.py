"""Where Elasticsearch is and how to prove who we are: nodes, TLS, credentials (pure).

The worker, ``faaslens setup``, ``faaslens query`` and retention all reach
Elasticsearch through :func:`settings` (here) and the factories in
:mod:`~faaslens.ingest.sink_es.client`, so they share one meaning of every
option:

- ``es_url``: one URL or several nodes of one cluster, comma-separated
  (``https://es1:9200,https://es2:9200``; a TOML list works too). Credentials
  written into a URL (``https://user:password@host``) are moved out of it, so
  the URLs that logs, metrics and error messages show never carry them.
- ``es_username`` + ``es_password`` (basic auth) or ``es_api_key`` (the
  ``encoded`` value of ``POST /_security/api_key``), each also from a file
  (``es_password_file``, ``es_api_key_file``, read by the config loader).
- TLS is verified by default, against the system's CAs, ``es_ca_certs`` (a PEM
  file with the CA that signed the nodes' certificates), or
  ``es_cert_fingerprint`` (SHA-256 of the node's own certificate, hex, colons
  optional: what aiohttp checks). ``es_verify_certs = false`` turns
  verification off and is logged as a warning by the worker.

Errors are :class:`ValueError` with the option's name and never the secret.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Connection:
    """Everything a client needs to reach the cluster; ``repr`` shows no secret."""

    nodes: tuple[str, ...]
    username: str = ""
    password: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    ca_certs: str = ""
    fingerprint: str = ""
    verify_certs: bool = True

    @property
    def endpoint(self) -> str:
        """The nodes as shown to people: ``https://a:9200,https://b:9200`` (no credentials)."""
        return ",".join(self.nodes)

    @property
    def auth(self) -> str:
        """``api_key``, ``basic`` or ``none``: which credentials go with each request."""
        return "api_key" if self.api_key else "basic" if self.username else "none"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Elasticsearch`` / ``AsyncElasticsearch`` (connection part).

        With several nodes a request that cannot reach one node (connection refused,
        timeout, 502/503/504) goes to the next; with one node the caller's own retry
        policy decides (the worker's window, then the spool).
        """
        options: dict[str, Any] = {"hosts": list(self.nodes)}
        if self.api_key:
            options["api_key"] = self.api_key
        elif self.username:
            options["basic_auth"] = (self.username, self.password)
        if any(node.startswith("https:") for node in self.nodes):
            if self.fingerprint:
                options["ssl_assert_fingerprint"] = self.fingerprint
            elif not self.verify_certs:
                options["verify_certs"] = False
                options["ssl_show_warn"] = False  # said once, by whoever chose it
            elif self.ca_certs:
                options["ca_certs"] = self.ca_certs
        others = len(self.nodes) - 1
        options["max_retries"] = others
        options["retry_on_timeout"] = others > 0
        options["retry_on_status"] = (502, 503, 504) if others else ()
        return options


def split_nodes(es_url: str | Sequence[str]) -> tuple[list[str], str, str]:
    """Node URLs without credentials, and the username and password found in them.

    Raises:
        ValueError: a part is not an ``http://`` / ``https://`` URL with a host and a
            valid port, there is no node at all, or the URLs carry different credentials.
    """
    parts = [es_url] if isinstance(es_url, str) else list(es_url)
    raw = [p.strip() for part in parts for p in part.split(",") if p.strip()]
    if not raw:
        raise ValueError("es_url: no Elasticsearch node given")
    nodes: list[str] = []
    found: set[tuple[str, str]] = set()
    for text in raw:
        url = _parse(text)
        if url.username is not None or url.password is not None:
            found.add((unquote(url.username or ""), unquote(url.password or "")))
        host = url.netloc.rpartition("@")[2]
        nodes.append(urlunsplit((url.scheme, host, url.path.rstrip("/"), "", "")))
    if len(found) > 1:
        raise ValueError("es_url: the nodes carry different credentials; give them once")
    username, password = next(iter(found), ("", ""))
    return nodes, username, password


def _parse(text: str) -> SplitResult:
    shown = _redacted(text)
    try:
        url = urlsplit(text)
        url.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise ValueError(f"es_url: {shown!r} is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(
            f"es_url: {shown!r} is not an http:// or https:// URL with a host "
            "(e.g. https://127.0.0.1:9200; several nodes: comma-separated)"
        )
    if url.query or url.fragment:
        raise ValueError(f"es_url: {shown!r} has a query or fragment; give the node's URL only")
    return url


def _redacted(text: str) -> str:
    """``text`` with anything between ``//`` and ``@`` replaced (it may be a password)."""
    return re.sub(r"//[^/@]*@", "//***@", text)


def settings(
    es_url: str,
    *,
    username: str = "",
    password: str = "",
    api_key: str = "",
    ca_certs: str = "",
    fingerprint: str = "",
    verify_certs: bool = True,
) -> Connection:
    """Check the options together and build the :class:`Connection`.

    Raises:
        ValueError: conflicting or incomplete options (the message names them).
    """
    nodes, url_user, url_password = split_nodes(es_url)
    if url_user or url_password:
        if username or password:
            raise ValueError(
                "es_url carries credentials and es_username/es_password are set too; give them once"
            )
        username, password = url_user, url_password
    if api_key and (username or password):
        raise ValueError("give es_api_key or es_username/es_password, not both")
    if password and not username:
        raise ValueError("es_password is set but es_username is not")
    if username and not password:
        raise ValueError(f"es_username {username!r} is set but es_password is not")
    pin = fingerprint.replace(":", "").strip().lower()
    if pin and not _FINGERPRINT.fullmatch(pin):
        raise ValueError(
            "es_cert_fingerprint: expected the certificate's SHA-256 fingerprint, "
            "64 hex digits (colons allowed)"
        )
    if pin and ca_certs:
        raise ValueError("give es_ca_certs or es_cert_fingerprint, not both")
    return Connection(
        nodes=tuple(nodes),
        username=username,
        password=password,
        api_key=api_key.strip(),
        ca_certs=ca_certs,
        fingerprint=pin,
        verify_certs=verify_certs,
    )

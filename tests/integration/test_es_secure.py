"""A secured Elasticsearch (TLS, file-realm users, API keys), as production runs it.

The node is ``scripts/stack up es-secure``: the integration-test distribution with
security on, certificates from its own ``elasticsearch-certutil``, users from
``elasticsearch-users`` and the worker's API key made through the API with the
writer role only (see docs/deploy.md). Index prefixes start with ``faaslens-``
because that is what the roles grant.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from elasticsearch import AuthenticationException, Elasticsearch
from prometheus_client import CollectorRegistry, generate_latest

from faaslens.commandline import EXIT_ELASTICSEARCH, EXIT_EMPTY
from faaslens.ingest.config import IngestConfig, load_config
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.client import make_sync_client
from faaslens.ingest.sink_es.sink import ElasticsearchSink
from tests.integration.test_es_sink import make_docs
from tests.support import apoll_until, poll_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def admin(es_secure: dict[str, Any]) -> Elasticsearch:
    config = IngestConfig(
        es_url=es_secure["url"],
        es_ca_certs=es_secure["ca_certs"],
        es_username=es_secure["admin"]["username"],
        es_password=es_secure["admin"]["password"],
    )
    return make_sync_client(config, timeout_s=30)


def count(es_secure: dict[str, Any], prefix: str, kind: str = "*") -> int:
    with admin(es_secure) as es:
        es.indices.refresh(index=f"{prefix}-{kind}-*", allow_no_indices=True)
        return int(es.count(index=f"{prefix}-{kind}-*", allow_no_indices=True)["count"])


def secrets_of(es_secure: dict[str, Any]) -> list[str]:
    """Every secret the tests hand out, in the forms a leak could take."""
    key = es_secure["api_key"]["encoded"]
    decoded = base64.b64decode(key).decode()
    out = [key, decoded, decoded.split(":", 1)[1]]
    out += [es_secure[user]["password"] for user in ("admin", "writer", "reader")]
    return out


def assert_no_secret(text: str, es_secure: dict[str, Any], *more: str) -> None:
    for secret in (*secrets_of(es_secure), *more):
        assert secret not in text


@pytest.fixture
def prefix(es_secure: dict[str, Any]) -> Iterator[str]:
    name = "faaslens-t" + secrets.token_hex(4)
    yield name
    with admin(es_secure) as es:
        # Names, not a wildcard: destructive_requires_name. Index templates first.
        indices = list(es.indices.get(index=f"{name}-*", expand_wildcards="all"))
        if indices:
            es.indices.delete(index=",".join(indices))
        found = es.options(ignore_status=404).indices.get_index_template(name=f"{name}-*")
        for template in found.body.get("index_templates", []):
            es.indices.delete_index_template(name=template["name"])
        found = es.options(ignore_status=404).cluster.get_component_template(name=f"{name}-*")
        for template in found.body.get("component_templates", []):
            es.cluster.delete_component_template(name=template["name"])


def new_api_key(es_secure: dict[str, Any], **body: Any) -> str:
    with admin(es_secure) as es:
        made = es.security.create_api_key(name="faaslens-test-" + secrets.token_hex(3), **body)
        return str(made["encoded"])


def expired_api_key(es_secure: dict[str, Any]) -> str:
    """A key that Elasticsearch already refuses as expired (polled, not slept for)."""
    key = new_api_key(es_secure, expiration="1s")

    def refused() -> bool:
        probe = Elasticsearch(es_secure["url"], ca_certs=es_secure["ca_certs"], api_key=key)
        try:
            probe.security.authenticate()
        except AuthenticationException:
            return True
        finally:
            probe.close()
        return False

    poll_until(refused, timeout=30, what="the API key to expire")
    return key


def write_secret(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


# ---------------------------------------------------------------- the worker


async def test_worker_with_an_api_key_from_a_file_indexes_dead_letters_and_expires_indices(
    es_secure: dict[str, Any], prefix: str, tmp_path: Path
) -> None:
    environ = {
        "FAASLENS_ES_URL": es_secure["url"],
        "FAASLENS_ES_CA_CERTS": es_secure["ca_certs"],
        "FAASLENS_ES_API_KEY_FILE": write_secret(tmp_path, "key", es_secure["api_key"]["encoded"]),
        "FAASLENS_ES_INDEX_PREFIX": prefix,
        "FAASLENS_STATE_DIR": str(tmp_path / "state"),
    }
    config = load_config(environ=environ)
    assert config.es_api_key == es_secure["api_key"]["encoded"]
    registry = CollectorRegistry()
    sink = ElasticsearchSink(config, registry)
    good = make_docs(40, logs=1)
    bad = Doc("invocations", "bad-duration", good[0].day, orjson.dumps({"event.duration": "x"}))
    with structlog.testing.capture_logs() as logs:
        await sink.start()
        try:
            assert sink.ready
            await sink.write([*good, bad])
            assert count(es_secure, prefix) == len(good)
            # The writer role may delete its prefix's expired daily indices (retention).
            deleted = await sink.apply_retention(today=_days_later(400))
            assert deleted and all(name.startswith(prefix + "-") for name in deleted)
        finally:
            await sink.close()
    assert count(es_secure, prefix) == 0
    dead = (tmp_path / "state" / "dead-letter.ndjson").read_text()
    assert '"id":"bad-duration"' in dead.replace(" ", "")
    for text in (dead, repr(config), str(logs), generate_latest(registry).decode()):
        assert_no_secret(text, es_secure)


def _days_later(days: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=days)


async def test_basic_auth_in_the_url_and_a_pinned_certificate(
    es_secure: dict[str, Any], prefix: str, tmp_path: Path
) -> None:
    writer = es_secure["writer"]
    url = es_secure["url"].replace(
        "https://", f"https://{writer['username']}:{writer['password']}@"
    )
    config = load_config(
        environ={
            "FAASLENS_ES_URL": url,
            "FAASLENS_ES_CERT_FINGERPRINT": es_secure["fingerprint"],
            "FAASLENS_ES_INDEX_PREFIX": prefix,
            "FAASLENS_STATE_DIR": str(tmp_path),
        }
    )
    assert config.es_url == es_secure["url"]  # the credentials moved out of the URL
    assert (config.es_username, config.es_password) == (writer["username"], writer["password"])
    sink = ElasticsearchSink(config, CollectorRegistry())
    docs = make_docs(10, logs=0)
    with structlog.testing.capture_logs() as logs:
        await sink.start()
        try:
            await sink.write(docs)
        finally:
            await sink.close()
    assert count(es_secure, prefix) == len(docs)
    assert any(e["event"] == "es_up" and e["url"] == es_secure["url"] for e in logs)
    assert_no_secret(str(logs), es_secure)


@pytest.mark.parametrize("fault", ["wrong_password", "expired_api_key"])
async def test_refused_credentials_are_a_counted_retry_state_and_nothing_is_lost(
    es_secure: dict[str, Any], prefix: str, tmp_path: Path, fault: str
) -> None:
    base = IngestConfig(
        es_url=es_secure["url"],
        es_ca_certs=es_secure["ca_certs"],
        es_index_prefix=prefix,
        state_dir=str(tmp_path),
        retry_base_s=0.05,
        retry_max_s=0.2,
    )
    if fault == "wrong_password":
        wrong = "not-" + es_secure["writer"]["password"]
        config = _replace(base, es_username=es_secure["writer"]["username"], es_password=wrong)
        expected = "check es_username and es_password"
    else:
        wrong = expired_api_key(es_secure)
        config = _replace(base, es_api_key=wrong)
        expected = "the API key has expired"
    registry = CollectorRegistry()
    sink = ElasticsearchSink(config, registry, retry_window_s=0.5)
    docs = make_docs(20, logs=1)
    with structlog.testing.capture_logs() as logs:
        await sink.start()  # no crash: the worker keeps running and spools
        try:
            assert not sink.ready
            await sink.write(docs)

            async def counted_twice() -> bool:
                value = registry.get_sample_value(
                    "faaslens_es_connect_failures_total", {"reason": "authentication"}
                )
                return (value or 0.0) >= 2

            await apoll_until(counted_twice, timeout=30, what="probes to be counted")
        finally:
            await sink.close()
    assert registry.get_sample_value("faaslens_docs_spooled_total") == len(docs)
    explained = [e for e in logs if e["event"] == "es_unavailable"]
    assert len(explained) == 1  # logged once, counted every time
    assert explained[0]["reason"] == "authentication"
    assert expected in explained[0]["error"]
    assert "\n" not in explained[0]["error"]
    assert_no_secret(str(logs) + generate_latest(registry).decode(), es_secure, wrong)

    # Fixed credentials: the same spool is replayed, every document exactly once.
    fixed = _replace(base, es_api_key=es_secure["api_key"]["encoded"])
    sink = ElasticsearchSink(fixed, CollectorRegistry())
    await sink.start()
    try:

        async def replayed() -> bool:
            return sink.spool.is_empty()

        await apoll_until(replayed, timeout=60, what="the spool to be replayed")
    finally:
        await sink.close()
    assert count(es_secure, prefix) == len(docs)


def _replace(config: IngestConfig, **over: Any) -> IngestConfig:
    import dataclasses

    return dataclasses.replace(config, **over)


# ---------------------------------------------------------------- the commands


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAASLENS_")}
    return subprocess.run(
        [sys.executable, "-m", "faaslens.cli", *args],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_setup_and_query_explain_an_expired_key_an_unknown_ca_and_a_wrong_password(
    es_secure: dict[str, Any], prefix: str, tmp_path: Path
) -> None:
    url, ca = es_secure["url"], es_secure["ca_certs"]
    common = {"FAASLENS_ES_URL": url, "FAASLENS_ES_INDEX_PREFIX": prefix}
    key = es_secure["api_key"]["encoded"]

    ok = run_cli(["setup"], {**common, "FAASLENS_ES_CA_CERTS": ca, "FAASLENS_ES_API_KEY": key})
    assert ok.returncode == 0, ok.stderr
    assert f"templates at {url}:" in ok.stdout
    assert_no_secret(ok.stdout + ok.stderr, es_secure)

    expired = expired_api_key(es_secure)
    env = {**common, "FAASLENS_ES_CA_CERTS": ca, "FAASLENS_ES_API_KEY": expired}
    done = run_cli(["setup"], env)
    assert done.returncode == EXIT_ELASTICSEARCH
    assert "the API key has expired" in one_line(done)
    done = run_cli(["query", "invocations"], env)
    assert done.returncode == EXIT_ELASTICSEARCH
    assert "the API key has expired" in one_line(done)
    assert expired not in done.stderr

    unknown_ca = {**common, "FAASLENS_ES_API_KEY": key}
    done = run_cli(["setup"], unknown_ca)
    assert done.returncode == EXIT_ELASTICSEARCH
    line = one_line(done)
    assert "certificate verify failed: unable to get local issuer certificate" in line
    assert "es_ca_certs" in line

    reader = es_secure["reader"]
    reader_flags = ["query", "invocations", "--es-ca-certs", ca]
    reader_flags += ["--es-username", reader["username"]]
    password_file = write_secret(tmp_path, "pw", "wrong-" + reader["password"])
    done = run_cli(
        [*reader_flags, "--es-password-file", password_file],
        common,
    )
    assert done.returncode == EXIT_ELASTICSEARCH
    assert f"unable to authenticate user [{reader['username']}]" in one_line(done)
    assert_no_secret(done.stderr, es_secure)

    right = write_secret(tmp_path, "pw-right", reader["password"])
    done = run_cli(
        [*reader_flags, "--es-password-file", right],
        common,
    )
    assert done.returncode == EXIT_EMPTY, done.stderr  # authenticated; nothing indexed yet
    assert one_line(done).endswith("no invocations match")


def test_the_writer_role_holds_only_what_the_worker_needs(es_secure: dict[str, Any]) -> None:
    """The API key cannot read documents or touch indices outside its prefix."""
    config = IngestConfig(
        es_url=es_secure["url"],
        es_ca_certs=es_secure["ca_certs"],
        es_api_key=es_secure["api_key"]["encoded"],
    )
    with make_sync_client(config, timeout_s=30) as es:
        answer = es.security.has_privileges(
            cluster=["monitor", "manage_index_templates", "manage", "manage_security"],
            index=[
                {
                    "names": ["faaslens-x"],
                    "privileges": ["create_doc", "create_index", "delete_index", "read", "index"],
                },
                {"names": ["other-x"], "privileges": ["create_doc"]},
            ],
        )
    assert answer["cluster"] == {
        "monitor": True,
        "manage_index_templates": True,
        "manage": False,
        "manage_security": False,
    }
    assert answer["index"]["faaslens-x"] == {
        "create_doc": True,
        "create_index": True,
        "delete_index": True,
        "read": False,
        "index": False,  # create only: an existing document is never overwritten
    }
    assert answer["index"]["other-x"] == {"create_doc": False}

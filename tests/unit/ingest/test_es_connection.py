"""Connection settings: several nodes, credentials out of URLs, secrets from files, TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from faaslens.ingest.config import ConfigError, IngestConfig, connection, load_config
from faaslens.ingest.sink_es.connection import settings, split_nodes


def test_several_nodes_comma_separated_or_as_a_toml_list(tmp_path: Path) -> None:
    nodes, user, password = split_nodes(" https://a:9200/ , https://b:9201,http://[::1]:9202")
    assert nodes == ["https://a:9200", "https://b:9201", "http://[::1]:9202"]
    assert (user, password) == ("", "")
    toml = tmp_path / "worker.toml"
    toml.write_text('[ingest]\nes_url = ["https://a:9200", "https://b:9200"]\n')
    config = load_config(environ={}, config_file=toml)
    assert config.es_url == "https://a:9200,https://b:9200"
    options = connection(config).client_options()
    assert options["hosts"] == ["https://a:9200", "https://b:9200"]
    # A node that cannot be reached hands the request to the next one.
    assert options["max_retries"] == 1
    assert options["retry_on_timeout"] is True


def test_one_node_leaves_retries_to_the_worker() -> None:
    options = settings("http://127.0.0.1:9200").client_options()
    assert options["max_retries"] == 0
    assert options["retry_on_timeout"] is False
    assert options["retry_on_status"] == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("notaurl", "is not an http:// or https:// URL"),
        ("ftp://host:21", "is not an http:// or https:// URL"),
        ("https://host:99999", "is not a URL"),
        ("https://host:9200?x=1", "query or fragment"),
        (" , ", "no Elasticsearch node"),
        ("https://a:pw1@h1:9200,https://a:pw2@h2:9200", "different credentials"),
    ],
)
def test_bad_urls_are_one_clear_error_without_the_password(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(environ={"FAASLENS_ES_URL": value})
    assert "pw1" not in str(err.value) and "pw2" not in str(err.value)


def test_credentials_move_out_of_the_url_and_never_show_in_repr() -> None:
    config = load_config(environ={"FAASLENS_ES_URL": "https://bob:s%40cret@es.example:9200"})
    assert config.es_url == "https://es.example:9200"
    assert (config.es_username, config.es_password) == ("bob", "s@cret")
    assert "s@cret" not in repr(config)
    conn = connection(config)
    assert "s@cret" not in repr(conn)
    assert conn.client_options()["basic_auth"] == ("bob", "s@cret")
    assert conn.endpoint == "https://es.example:9200"


def test_secrets_come_from_files_and_not_twice(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("c2VjcmV0LWtleQ==\n")
    config = load_config(environ={"FAASLENS_ES_API_KEY_FILE": str(key)})
    assert config.es_api_key == "c2VjcmV0LWtleQ=="
    assert connection(config).client_options()["api_key"] == "c2VjcmV0LWtleQ=="
    assert "c2VjcmV0LWtleQ" not in repr(config)
    with pytest.raises(ConfigError, match="es_api_key or es_api_key_file"):
        load_config(environ={"FAASLENS_ES_API_KEY_FILE": str(key), "FAASLENS_ES_API_KEY": "x"})
    with pytest.raises(ConfigError, match=r"es_password_file .*missing: cannot read it"):
        load_config(environ={"FAASLENS_ES_PASSWORD_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"es_api_key": "k", "es_username": "u", "es_password": "p"}, "not both"),
        ({"es_password": "p"}, "es_username is not"),
        ({"es_username": "u"}, "es_password is not"),
        ({"es_cert_fingerprint": "abc"}, "64 hex digits"),
        ({"es_cert_fingerprint": "ab" * 32, "es_ca_certs": "/ca.pem"}, "not both"),
    ],
)
def test_conflicting_options_are_refused(over: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connection(IngestConfig(**over))  # type: ignore[arg-type]


def test_tls_options_only_for_https_and_a_fingerprint_with_colons() -> None:
    pin = ":".join(["AB"] * 32)
    options = settings("https://h:9200", fingerprint=pin).client_options()
    assert options["ssl_assert_fingerprint"] == "ab" * 32
    assert "ca_certs" not in options
    options = settings("https://h:9200", ca_certs="/etc/ca.pem").client_options()
    assert options["ca_certs"] == "/etc/ca.pem"
    assert "verify_certs" not in options  # verified: the client's default
    options = settings("https://h:9200", verify_certs=False).client_options()
    assert options["verify_certs"] is False
    assert "ca_certs" not in settings("http://h:9200", ca_certs="/ca.pem").client_options()


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"es_ca_certs .*no readable file"):
        load_config(environ={"FAASLENS_ES_CA_CERTS": str(tmp_path / "nope.pem")})


def test_state_paths_do_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    config = load_config(environ={"FAASLENS_STATE_DIR": str(tmp_path / "state")})
    assert config.spool_dir == str(tmp_path / "state" / "spool")
    assert config.dead_letter_path == str(tmp_path / "state" / "dead-letter.ndjson")
    default = IngestConfig()
    assert Path(default.spool_dir).is_absolute()
    assert Path(default.dead_letter_path).is_absolute()
    explicit = load_config(environ={"FAASLENS_SPOOL_DIR": "/srv/spool"})
    assert explicit.spool_dir == "/srv/spool"

"""The ``faaslens`` command as a user meets it: each case runs the real CLI in a
process of its own and reads its exit status, stdout and stderr."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from faaslens.cli import COMMANDS, EXTRA_MODULES
from faaslens.commandline import (
    EXIT_ELASTICSEARCH,
    EXIT_MISSING_EXTRA,
    EXIT_START,
    EXIT_STATUSES,
    EXIT_USAGE,
)
from faaslens.ingest.config import IngestConfig, env_name, fields_for, flag, load_config

REPO = Path(__file__).resolve().parents[2]
# Every --help there is: the subcommands, and the query commands under them.
HELP_PAGES = [
    ["ingest"],
    ["setup"],
    ["demo"],
    ["query"],
    ["query", "invocation"],
    ["query", "invocations"],
    ["query", "errors"],
]
SETTINGS_OF = {"ingest": "ingest", "setup": "setup", "query": "query"}


def faaslens(
    *args: str, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``faaslens <args>`` (or ``python -c code``) with only our FAASLENS_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAASLENS_")}
    argv = ["-c", code] if code else ["-m", "faaslens.cli", *args]
    return subprocess.run(
        [sys.executable, *argv],
        env={**clean, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def option_help(text: str) -> dict[str, str]:
    """``--flag`` -> its help text, from argparse's option listing."""
    entries: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        m = re.match(r"^  (-[^ ].*?)(?:  +(\S.*))?$", line)
        if m:
            current = re.findall(r"--[a-z-]+", m.group(1))[0]
            entries[current] = m.group(2) or ""
        elif current and line.startswith(" " * 8):
            entries[current] += " " + line.strip()
        else:
            current = ""
    return entries


@pytest.mark.parametrize("page", HELP_PAGES, ids=" ".join)
def test_help_gives_meaning_default_and_unit_of_every_option(page: list[str]) -> None:
    done = faaslens(*page, "--help")
    assert done.returncode == 0 and done.stderr == ""
    entries = option_help(done.stdout)
    entries.pop("--help")
    if page == ["query"]:
        assert entries == {}  # its commands carry the options
        return
    assert entries, done.stdout
    for option, text in entries.items():
        assert re.search(r"\bdefault\b", text), f"{option}: no default in {text!r}"
        assert len(text.split()) >= 4, f"{option}: too little said: {text!r}"
    settings = fields_for(SETTINGS_OF[page[0]]) if page[0] in SETTINGS_OF else []
    meta = {f.name: f.metadata for f in fields(IngestConfig)}
    for name in settings:
        text = entries[flag(name)]
        assert env_name(name) in text
        if meta[name]["unit"]:
            assert meta[name]["unit"] in text, f"{name}: unit missing from {text!r}"
    # Only what the command reads: setup and query list no worker-only setting.
    worker_only = set(fields_for("ingest")) - set(settings)
    assert not {flag(n) for n in worker_only} & set(entries)
    for code, _ in EXIT_STATUSES:
        assert re.search(rf"^  {code} ", done.stdout, re.M)


def test_setup_help_lists_only_what_setup_uses() -> None:
    entries = set(option_help(faaslens("setup", "--help").stdout))
    assert entries == {"--help", "--config"} | {flag(n) for n in fields_for("setup")}
    assert "--udp-listen" not in entries and "--series-cap" not in entries


def test_booleans_are_flags_both_ways(tmp_path: Path) -> None:
    text = faaslens("ingest", "--help").stdout
    assert "--reuse-port, --no-reuse-port" in text
    assert "--require-signature, --no-require-signature" in text
    # --no-reuse-port wins over the variable: the worker then cannot share its port.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        args = ["--sink", "null", "--tcp-listen", "", "--http-listen", ""]
        args += ["--udp-listen", f"127.0.0.1:{port}", "--spool-dir", str(tmp_path)]
        done = faaslens("ingest", *args, "--no-reuse-port", env={"FAASLENS_REUSE_PORT": "1"})
    assert done.returncode == EXIT_START, done.stderr
    assert "worker failed to start" in done.stderr and "Traceback" not in done.stderr


def test_version() -> None:
    done = faaslens("--version")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert done.returncode == 0
    assert done.stdout == f"faaslens {pyproject['project']['version']}\n"


BAD_VALUES = [
    (["query", "invocations", "--es-url", "notaurl"], {}, "--es-url"),
    (["query", "errors", "--limit", "0"], {}, "--limit"),
    (["query", "invocations", "--since", "yesterday-ish"], {}, "yesterday-ish"),
    (["query", "errors"], {"FAASLENS_ES_INDEX_PREFIX": "Bad Prefix"}, "FAASLENS_ES_INDEX_PREFIX"),
    (["query", "errors", "--index-prefix", "x"], {}, "--index-prefix"),
    (["setup", "--es-url", "notaurl"], {}, "--es-url"),
    (["setup"], {"FAASLENS_ES_REQUEST_TIMEOUT_S": "soon"}, "FAASLENS_ES_REQUEST_TIMEOUT_S"),
    (["ingest", "--udp-listen", "8518"], {}, "--udp-listen"),
    (["ingest", "--tcp-listen", "127.0.0.1:99999"], {}, "--tcp-listen"),
    (["ingest", "--udp-rcvbuf", "12x"], {}, "--udp-rcvbuf"),
    (["ingest", "--log-level", "loud"], {}, "--log-level"),
    (["ingest"], {"FAASLENS_SERIES_CAP": "0"}, "FAASLENS_SERIES_CAP"),
    (["ingest"], {"FAASLENS_REUSE_PORT": "maybe"}, "FAASLENS_REUSE_PORT"),
    (["query", "errors", "--limit", "many"], {}, "--limit"),
    (["query", "invocations", "--min-duration", "-1"], {}, "--min-duration"),
    (["query", "invocations", "--min-duration", "nan"], {}, "--min-duration"),
    (["query", "invocation", " "], {}, "invocation_id"),
    (["query", "invocation", "x" * 129], {}, "at most 128"),
    (["query", "errors", "--since", "1h", "--until", "2h"], {}, "--until"),
    (["demo", "--rate", "x"], {}, "--rate"),
    (["demo", "--rate", "0"], {}, "--rate"),
    (["demo", "--duration", "-5"], {}, "--duration"),
    (["demo", "--functions", "0"], {}, "--functions"),
    (["demo"], {"FAASLENS_ENDPOINT": "bogus"}, "FAASLENS_ENDPOINT"),
    (["demo"], {"FAASLENS_PRICE_PER_GB_S": "cheap"}, "FAASLENS_PRICE_PER_GB_S"),
    (["nosuch"], {}, "nosuch"),
]


@pytest.mark.parametrize(("args", "env", "named"), BAD_VALUES, ids=str)
def test_a_bad_value_is_one_line_and_status_2(
    args: list[str], env: dict[str, str], named: str
) -> None:
    done = faaslens(*args, env=env)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("faaslens") and named in lines[0]
    assert "Traceback" not in done.stderr


def test_bad_key_in_the_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "faaslens.toml"
    config.write_text('[ingest]\nes_url = "http://127.0.0.1:9200"\nno_such_key = 1\n')
    done = faaslens("setup", "--config", str(config))
    assert done.returncode == EXIT_USAGE
    assert done.stderr.splitlines() == [
        f"faaslens setup: config file {config}: unknown key 'no_such_key'"
    ]


@pytest.mark.parametrize("command", [["setup"], ["query", "errors"]])
def test_unreachable_elasticsearch_is_one_line_and_status_3(command: list[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    done = faaslens(*command, "--es-url", url)
    assert done.returncode == EXIT_ELASTICSEARCH, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and url in lines[0] and "Traceback" not in done.stderr


def test_query_reads_the_workers_configuration_sources(tmp_path: Path) -> None:
    """--config file < FAASLENS_* < flags, with the worker's names; the URL that
    is refused shows which source won."""
    file_url, env_url, flag_url = (f"http://127.0.0.1:{closed_port()}" for _ in range(3))
    config = tmp_path / "faaslens.toml"
    config.write_text(f'[ingest]\nes_url = "{file_url}"\nudp_listen = ":9999"\n')
    cases = [
        ([], {"FAASLENS_CONFIG": str(config)}, file_url),
        (["--config", str(config)], {}, file_url),
        (["--config", str(config)], {"FAASLENS_ES_URL": env_url}, env_url),
        (["--config", str(config), "--es-url", flag_url], {"FAASLENS_ES_URL": env_url}, flag_url),
    ]
    for args, env, url in cases:
        done = faaslens("query", "errors", *args, env=env)
        assert done.returncode == EXIT_ELASTICSEARCH, (args, env, done.stderr)
        assert url in done.stderr, (args, env, done.stderr)
    # A worker-only variable that is bad does not trouble query.
    done = faaslens("query", "errors", "--es-url", flag_url, env={"FAASLENS_SERIES_CAP": "x"})
    assert done.returncode == EXIT_ELASTICSEARCH


def without_extra(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``faaslens <argv>`` with the ingest extra's modules unimportable, as in an
    environment where it is not installed."""
    blocked = sorted(EXTRA_MODULES["ingest"])
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from faaslens.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return faaslens(code=code)


# What each command needing the extra runs as (query's --help needs no extra).
RUN = {"ingest": ["ingest"], "setup": ["setup"], "query": ["query", "errors"]}


@pytest.mark.parametrize("command", [n for n, (_, extra, _) in COMMANDS.items() if extra])
def test_missing_extra_says_which_to_install(command: str) -> None:
    done = without_extra(RUN[command])
    assert done.returncode == EXIT_MISSING_EXTRA, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "pip install 'faaslens[ingest]'" in done.stderr


def test_demo_needs_no_extra() -> None:
    done = without_extra(["demo", "--help"])
    assert done.returncode == 0, done.stderr


def test_a_setting_only_start_can_check_is_status_2(tmp_path: Path) -> None:
    """A file named by a setting is read at start: a missing one is still a bad value."""
    args = ["--sink", "null", "--udp-listen", "", "--tcp-listen", "", "--http-listen", ""]
    args += ["--lines-listen", "127.0.0.1:0", "--lines-declarations", str(tmp_path / "no.json")]
    done = faaslens("ingest", *args, "--spool-dir", str(tmp_path))
    assert done.returncode == EXIT_USAGE, done.stderr
    errors = [x for x in done.stderr.splitlines() if '"level":"error"' in x]
    assert len(errors) == 1 and "lines_declarations" in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_what_stops_the_worker_at_start_is_named_on_one_plain_line(tmp_path: Path) -> None:
    """An address in use or an unusable folder: status 5, and the last line names the
    setting and its value (the JSON log line before it is for log collectors)."""
    off = {"udp_listen": "", "tcp_listen": "", "http_listen": ""}
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket() as tcp,
    ):
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp_at = f"127.0.0.1:{udp.getsockname()[1]}"
        tcp_at = f"127.0.0.1:{tcp.getsockname()[1]}"
        cases = [
            ({"udp_listen": udp_at}, f"udp_listen '{udp_at}': Address already in use"),
            ({"tcp_listen": tcp_at}, f"tcp_listen '{tcp_at}': Address already in use"),
            ({"http_listen": tcp_at}, f"http_listen '{tcp_at}': Address already in use"),
            ({"lines_listen": tcp_at}, f"lines_listen '{tcp_at}': Address already in use"),
            (
                {"spool_dir": f"{not_a_dir}/spool", "sink": "elasticsearch"},
                f"spool_dir '{not_a_dir}/spool': Not a directory",
            ),
        ]
        for settings, message in cases:
            args = ["--sink", "null", "--es-url", f"http://127.0.0.1:{closed_port()}"]
            for name, value in {**off, **settings}.items():
                args += [flag(name), value]
            done = faaslens("ingest", *args)
            assert done.returncode == EXIT_START, (settings, done.stderr)
            assert done.stderr.splitlines()[-1] == f"faaslens ingest: {message}", done.stderr
            assert "Traceback" not in done.stderr


def test_a_variable_set_to_nothing_is_not_set_unless_empty_is_a_value(tmp_path: Path) -> None:
    """``FAASLENS_X=`` for a boolean or a number leaves the file's value (or the default);
    for text it is the empty value (an empty listen address disables the source)."""
    config = tmp_path / "faaslens.toml"
    config.write_text("reuse_port = true\nbatch_max_docs = 10\nbatch_max_wait_s = 0.25\n")
    blank = {"FAASLENS_REUSE_PORT": "", "FAASLENS_BATCH_MAX_DOCS": " ", "FAASLENS_UDP_LISTEN": ""}
    blank["FAASLENS_BATCH_MAX_WAIT_S"] = ""
    loaded = load_config(environ=blank, config_file=config)
    assert (loaded.reuse_port, loaded.batch_max_docs, loaded.batch_max_wait_s) == (True, 10, 0.25)
    assert loaded.udp_listen == ""
    assert load_config(environ={"FAASLENS_SERIES_CAP": ""}).series_cap == IngestConfig().series_cap

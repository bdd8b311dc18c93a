"""The documentation names only things that exist: variables, Python names, command options."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from faaslens.ingest.config import IngestConfig, env_name
from faaslens.shipper.config import ENV_PREFIX, PRICE_ENV_KEYS, ShipperConfig

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Pages about the Python API (shipper-node.md and migrating.md show the NodeJS package,
# whose names are camelCase and live in nodejs/).
PYTHON_PAGES = [REPO / "README.md", REPO / "docs" / "shipper.md"]
# Dotted words in those pages that are values, file names or NodeJS calls, not Python names.
NOT_PYTHON = {"faaslens.Timeout"}
NODE_ONLY = {"lambda", "azure", "gcpHttp", "gcpCloudEvent", "getLogger"}


def _variables() -> set[str]:
    names = {ENV_PREFIX + slot.upper() for slot in ShipperConfig.__slots__ if slot != "prices"}
    names |= {f"{ENV_PREFIX}PRICE_{key.upper()}" for key in PRICE_ENV_KEYS}
    names |= {env_name(f.name) for f in fields(IngestConfig)}
    names.add(ENV_PREFIX + "CONFIG")  # the worker's --config
    return names


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_variable_named_is_read_by_a_shipper_or_the_worker(page: Path) -> None:
    text = page.read_text()
    # "FAASLENS_PRICE_*" and "_PER_REQUEST"-style shorthands after a full name are fine.
    named = set(re.findall(r"\bFAASLENS_[A-Z0-9_]*[A-Z0-9]\b", text))
    assert named <= _variables(), sorted(named - _variables())


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    target: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            target = getattr(target, part)
        except AttributeError:
            target = importlib.import_module(".".join(parts[: i + 1]))
    return target


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_every_python_name_given_resolves(page: Path) -> None:
    text = page.read_text()
    dotted = set(re.findall(r"\bfaaslens(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text)) - NOT_PYTHON
    dotted = {d for d in dotted if d.split(".")[1] not in NODE_ONLY}
    assert dotted, "no names found: the pattern is out of date"
    missing = []
    for name in sorted(dotted):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, missing


# "faaslens <command>" and the words after it on the same line, options and their values.
COMMAND_LINE = re.compile(
    r"faaslens ((?:query )?[a-z]+)"
    r"((?: +(?:--?[a-z][a-z0-9-]*|[^\s`|-]\S*))*)"
)


def _help(command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "faaslens.cli", *command.split(), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    return done.stdout


def test_every_option_given_to_a_command_exists() -> None:
    """``faaslens <command> --flag`` in any page: the command's --help lists --flag."""
    commands = {"ingest", "setup", "demo", "query invocation", "query invocations", "query errors"}
    helps = {command: _help(command) for command in commands}
    checked, wrong = 0, []
    for page in DOCS:
        text = page.read_text().replace("\\\n", " ")  # shell line continuations
        for command, rest in COMMAND_LINE.findall(text):
            if command not in commands:
                continue
            for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
                checked += 1
                if option not in helps[command]:
                    wrong.append(f"{page.name}: faaslens {command} {option}")
    assert checked > 10, "no options found: the pattern is out of date"
    assert not wrong, wrong

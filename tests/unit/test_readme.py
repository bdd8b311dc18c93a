"""The README's tables say what the code does: exit statuses and worker settings."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from faaslens.commandline import EXIT_STATUSES
from faaslens.ingest.config import IngestConfig

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def test_exit_status_table_lists_every_status() -> None:
    rows = re.findall(r"^\| (\d+) \|", section("Configuration"), re.M)
    assert [int(r) for r in rows] == [code for code, _ in EXIT_STATUSES]


def test_configuration_table_names_real_settings() -> None:
    names = {f.name for f in fields(IngestConfig)}
    table = [line for line in section("Configuration").splitlines() if line.startswith("| `")]
    cited = {n for line in table for n in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert len(cited) > 10 and cited <= names, cited - names

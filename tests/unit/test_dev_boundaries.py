"""Development code stays on its side: nothing outside tests/ imports tests, and nothing the
wheel installs imports the development packages (grafana/, devkit/), which it does not hold."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Installed with the wheel (faaslens/shipper and faaslens/ingest are these folders).
SHIPPED = ("faaslens", "shipper", "ingest")
DEV_ONLY = ("grafana", "devkit")


def _python_files(top: str) -> list[Path]:
    root = REPO / top
    if root.is_file():
        return [root]
    # faaslens/shipper and faaslens/ingest are symlinks to folders listed on their own.
    return [p for p in root.rglob("*.py") if not any(part.is_symlink() for part in p.parents)]


def _imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (lazy imports inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_nothing_outside_tests_imports_tests() -> None:
    checked = [
        p for top in (*SHIPPED, *DEV_ONLY, "bench", "scripts/stack") for p in _python_files(top)
    ]
    assert len(checked) > 20
    offenders = [str(p.relative_to(REPO)) for p in checked if "tests" in _imports(p)]
    assert offenders == []


def test_shipped_code_does_not_import_development_packages() -> None:
    checked = [p for top in SHIPPED for p in _python_files(top)]
    offenders = {
        str(p.relative_to(REPO)): sorted(_imports(p) & set(DEV_ONLY))
        for p in checked
        if _imports(p) & set(DEV_ONLY)
    }
    assert offenders == {}

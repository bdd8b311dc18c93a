"""The function-side API: every documented name works whatever was touched first."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import faaslens
import faaslens.shipper

# What each public name must be once the other names have been touched.
_CHECK = """
import faaslens, inspect, sys
for other in faaslens.__all__:
    if other != {name!r}:
        getattr(faaslens, other)
log = faaslens.get_logger("x")
faaslens.counter("c")
@faaslens.instrument
def h(event, context):
    log.info("in")
    return 1
h({{}}, None)
value = getattr(faaslens, {name!r})
assert not inspect.ismodule(value), f"{{value!r}} is a module"
if {name!r} == "invocation":
    with faaslens.invocation(name="job") as inv:
        assert faaslens.current_invocation() is inv
print("ok")
"""


def _submodules(package: object) -> set[str]:
    return {m.name for m in pkgutil.iter_modules(package.__path__)}  # type: ignore[attr-defined]


def test_no_public_name_is_also_a_submodule_name() -> None:
    clashes = set(faaslens.__all__) & (_submodules(faaslens) | _submodules(faaslens.shipper))
    assert clashes == set()


@pytest.mark.parametrize("name", faaslens.__all__)
def test_each_public_name_after_the_others_in_a_fresh_interpreter(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHECK.format(name=name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"FAASLENS_ENDPOINT": "udp://127.0.0.1:9", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_only_faaslens_is_a_top_level_package_of_the_distribution() -> None:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    find = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.split(".")[0] for p in find["include"]} == {"faaslens"}

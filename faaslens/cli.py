"""The ``faaslens`` command: a thin dispatcher to each subcommand's module.

Subcommand modules are imported only when chosen, so ``faaslens demo`` never
pays for the worker's dependencies and vice versa. A subcommand whose extra is
not installed says which one to install (exit status 4); Ctrl-C ends any of
them with status 130 and no traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib import metadata

from faaslens.commandline import (
    EXIT_HELP,
    EXIT_INTERRUPTED,
    EXIT_MISSING_EXTRA,
    EXIT_OK,
    EXIT_USAGE,
    fail,
)

# name -> (module with ``main(argv) -> int``, the extra it needs or "", one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "ingest": (
        "faaslens.ingest.runner",
        "ingest",
        "run the ingest worker (UDP/TCP in, Elasticsearch + /metrics out)",
    ),
    "setup": ("faaslens.ingest.setup", "ingest", "install the Elasticsearch templates and exit"),
    "demo": ("faaslens.demo", "", "send simulated function traffic through the real shipper"),
    "query": (
        "faaslens.query.cli",
        "ingest",
        "look up invocations and search errors in Elasticsearch",
    ),
}
# Top-level modules each extra brings (pyproject.toml's optional dependencies).
EXTRA_MODULES = {
    "ingest": {
        "elasticsearch",
        "elastic_transport",
        "aiohttp",
        "prometheus_client",
        "msgspec",
        "uvloop",
    },
}


def version() -> str:
    """The installed distribution's version, or ``unknown`` from a bare checkout."""
    try:
        return metadata.version("faaslens")
    except metadata.PackageNotFoundError:
        return "unknown"


def _usage() -> str:
    lines = ["usage: faaslens [--version] <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run 'faaslens <command> --help' for the command's options.", "", EXIT_HELP]
    return "\n".join(lines)


def _missing(exc: ModuleNotFoundError, extra: str) -> bool:
    top = (exc.name or "").partition(".")[0]
    return bool(extra) and top in EXTRA_MODULES.get(extra, set())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``faaslens`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return EXIT_OK if args else EXIT_USAGE
    if args[0] == "--version":
        print(f"faaslens {version()}")
        return EXIT_OK
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        known = ", ".join(COMMANDS)
        return fail("faaslens", f"unknown command {name!r} (commands: {known})", EXIT_USAGE)
    module_name, extra, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
        code: int = module.main(rest)
    except ModuleNotFoundError as exc:
        if not _missing(exc, extra):
            raise
        return fail(
            f"faaslens {name}",
            f"needs the '{extra}' extra (module {exc.name!r} is missing): "
            f"pip install 'faaslens[{extra}]'",
            EXIT_MISSING_EXTRA,
        )
    except KeyboardInterrupt:
        return fail(f"faaslens {name}", "interrupted", EXIT_INTERRUPTED)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The ``faaslens`` command: a thin dispatcher to each subcommand's module.

Subcommand modules are imported only when chosen, so ``faaslens demo`` never
pays for the worker's dependencies and vice versa.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# name -> (module with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": (
        "faaslens.ingest.runner",
        "run the ingest worker (UDP/TCP in, Elasticsearch + /metrics out)",
    ),
    "setup": ("faaslens.ingest.setup", "install the Elasticsearch templates and exit"),
    "demo": ("faaslens.demo", "send simulated function traffic through the real shipper"),
    "query": ("faaslens.query.cli", "look up invocations and search errors in Elasticsearch"),
}


def _usage() -> str:
    lines = ["usage: faaslens <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'faaslens <command> --help' for the command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``faaslens`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"faaslens: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    code: int = module.main(rest)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""What every ``faaslens`` command shares: exit statuses and one-line errors.

Standard library only: ``faaslens demo`` and the dispatcher import it without
the worker's dependencies.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import Callable
from typing import NoReturn

#: Exit statuses, the same for every subcommand.
EXIT_OK = 0
EXIT_EMPTY = 1  # ran, but nothing came of it: no match (query), nothing sent (demo)
EXIT_USAGE = 2  # a bad option or configuration value (flag, FAASLENS_*, config file)
EXIT_ELASTICSEARCH = 3  # Elasticsearch unreachable, or it refused the request
EXIT_MISSING_EXTRA = 4  # the command needs an extra that is not installed
EXIT_START = 5  # the worker could not start (an address in use, a directory not writable)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

EXIT_STATUSES = (
    (EXIT_OK, "success"),
    (EXIT_EMPTY, "nothing matched (query) or nothing was sent (demo)"),
    (EXIT_USAGE, "bad option or configuration value"),
    (EXIT_ELASTICSEARCH, "Elasticsearch unreachable or refusing"),
    (EXIT_MISSING_EXTRA, "an extra is missing: pip install 'faaslens[ingest]'"),
    (EXIT_START, "the worker could not start (address in use, ...)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)
EXIT_HELP = "exit status:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_STATUSES)


def fail(prog: str, message: str, code: int) -> int:
    """Print ``<prog>: <message>`` on one line to stderr; return ``code`` for ``main``."""
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and exit with :data:`EXIT_USAGE`.

    Its ``--help`` ends with the exit statuses.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        description = kwargs.get("description")
        if isinstance(description, str):  # raw formatting (for the epilog): wrap it here
            paragraphs = description.split("\n\n")
            kwargs["description"] = "\n\n".join(textwrap.fill(p, 79) for p in paragraphs)
        kwargs.setdefault("epilog", EXIT_HELP)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        """One line on stderr (no usage block), then exit with :data:`EXIT_USAGE`."""
        sys.exit(fail(self.prog, f"{message} (see '{self.prog} --help')", EXIT_USAGE))


def bounded(
    kind: Callable[[str], float], minimum: float, *, inclusive: bool = True
) -> Callable[[str], float]:
    """An argparse ``type``: a finite ``kind`` (``int`` or ``float``) of at least ``minimum``
    (more than it when not ``inclusive``).

    A bad value becomes the parser's one-line error naming the option, e.g.
    ``argument --limit: must be at least 1, got 0``.
    """
    bound = f"at least {minimum:g}" if inclusive else f"more than {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def non_empty(text: str) -> str:
    """An argparse ``type``: any string but an empty or blank one."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text

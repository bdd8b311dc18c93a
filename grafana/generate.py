"""Write the Grafana dashboards in ``grafana/dashboards/`` from :mod:`grafana.boards`.

Run from the repository root::

    python -m grafana.generate          # rewrite the JSON files
    python -m grafana.generate --check  # exit 1 if a file is out of date or not generated

The dashboards are built with grafana-foundation-sdk (the ``dev`` extra pins the
release; its output is what the files hold, so a new release may rewrite them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana.boards import BOARDS

OUT_DIR = Path(__file__).resolve().parent / "dashboards"


def rendered() -> dict[str, str]:
    """Every dashboard's JSON text, by file name."""
    return {name: build().to_json() for name, build in BOARDS.items()}


def stale(directory: Path = OUT_DIR) -> list[str]:
    """File names in ``directory`` that differ from what the builders make, or that none makes."""
    made = rendered()
    found = {p.name for p in directory.glob("*.json")}
    out_of_date = [
        name
        for name, text in made.items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
    return sorted(out_of_date + sorted(found - set(made)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grafana.generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="only report files that are out of date (exit 1)"
    )
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        if names:
            print(
                f"out of date: {', '.join(names)}; run python -m grafana.generate", file=sys.stderr
            )
            return 1
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        path = OUT_DIR / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run every benchmark in this folder, one after the other, and keep their reports.

    python bench/run.py            # full runs (several minutes; needs the local stack)
    python bench/run.py --quick    # short smoke runs
    python bench/run.py shipper    # only the benchmarks whose file name contains "shipper"

Each benchmark measures its own baseline in the same run and prints ratios;
this runner only sequences them and writes the combined report to
``bench/results/latest.txt``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("only", nargs="*", help="substrings of benchmark file names to run")
    args = parser.parse_args()
    scripts = sorted(
        p
        for p in [*HERE.glob("*.py"), *HERE.glob("*.mjs")]
        if p.name != "run.py" and not p.name.startswith("_")
    )
    if args.only:
        scripts = [p for p in scripts if any(s in p.stem for s in args.only)]
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    report: list[str] = []
    failed = 0
    for script in scripts:
        runner = "node" if script.suffix == ".mjs" else sys.executable  # NodeJS shipper's bench
        cmd = [runner, str(script)] + (["--quick"] if args.quick else [])
        banner = f"==== {script.name} {'(quick)' if args.quick else ''}"
        print(banner, flush=True)
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        took = time.monotonic() - started
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            failed += 1
            sys.stdout.write(proc.stderr[-4000:])
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"---- {script.name}: {status} in {took:.1f}s\n", flush=True)
        report += [banner, proc.stdout, f"---- {status} in {took:.1f}s", ""]
    (out_dir / "latest.txt").write_text("\n".join(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

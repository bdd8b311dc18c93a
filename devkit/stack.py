"""``scripts/stack`` from Python: start, stop and ask about the local services and test nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

STACK_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "stack"


def run_stack(action: str, service: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """``scripts/stack <action> <service>``; for ``status``, its JSON report.

    ``env`` adds to the environment (``FAASLENS_STACK_DIR``, ports, heap). ``up`` is a
    no-op for what already runs.

    Raises:
        RuntimeError: ``up`` or ``down`` failed (with the end of the script's output).
    """
    done = subprocess.run(
        [sys.executable, str(STACK_SCRIPT), action, service, "--json"],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if action == "status":
        report: list[dict[str, Any]] = json.loads(done.stdout)
        return report
    if done.returncode != 0:
        raise RuntimeError(f"scripts/stack {action} {service} failed:\n{done.stderr[-3000:]}")
    return []

"""The dashboards, one module each; every module has ``build() -> Board``.

To add a dashboard: write ``grafana/boards/<name>.py`` with a ``build()``, add it to
:data:`BOARDS` under its file name, run ``python -m grafana.generate``, and give it a
check in ``tests/integration/test_dashboards.py`` (every query must return data there;
a dashboard fed by other traffic gets a test of its own, as ``seed-compat.json`` has in
``tests/integration/test_lines.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from grafana.boards import errors, invocations, overview, seed_compat, worker_health
from grafana.kit import Board

#: File name in grafana/dashboards/ -> the function that builds it.
BOARDS: dict[str, Callable[[], Board]] = {
    "overview.json": overview.build,
    "invocations.json": invocations.build,
    "errors.json": errors.build,
    "worker-health.json": worker_health.build,
    "seed-compat.json": seed_compat.build,
}

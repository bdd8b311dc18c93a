"""What tests import for the real services; defined in :mod:`devkit`, which ``bench/`` and
the tools in ``grafana/`` use too (they may not import tests)."""

from devkit.services import Prometheus, ServiceError, delete_es_prefix, es_request, http_json
from devkit.wait import apoll_until, poll_until
from devkit.worker import WorkerThread, worker_test_config

__all__ = [
    "Prometheus",
    "ServiceError",
    "WorkerThread",
    "apoll_until",
    "delete_es_prefix",
    "es_request",
    "http_json",
    "poll_until",
    "worker_test_config",
]

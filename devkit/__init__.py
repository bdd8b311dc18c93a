"""Development helpers shared by the tests, ``bench/`` and the tools in ``grafana/``.

Never installed (the wheel holds ``faaslens`` only), so nothing the library or the worker
runs may import it. Run from the repository root (or with it on ``PYTHONPATH``).

* :mod:`devkit.wait`: poll a condition under a deadline;
* :mod:`devkit.services`: the real Elasticsearch and Prometheus over plain HTTP;
* :mod:`devkit.worker`: an ingest worker in a thread of this process.
"""

"""Grafana side of faaslens, for development only (never installed with the wheel).

* :mod:`grafana.boards`: the dashboards, built with grafana-foundation-sdk, one module each;
* :mod:`grafana.generate`: writes them to ``grafana/dashboards/*.json`` (or checks them);
* :mod:`grafana.emulate`: does with a dashboard's queries what Grafana would, so tests can
  run every panel query against the real Prometheus and Elasticsearch;
* :mod:`grafana.render`: plots panels from those queries on demo traffic.

Run them from the repository root: ``python -m grafana.generate``.
"""

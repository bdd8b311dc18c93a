"""faaslens ingest worker: sources -> validate -> batch -> sinks (Elasticsearch, Prometheus)."""

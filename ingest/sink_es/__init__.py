"""The Elasticsearch sink, one responsibility per module:

- ``sink``: :class:`ElasticsearchSink`, the composition (lifecycle, write path);
- ``client``: the client factory shared with ``faaslens setup`` and ``query``, the probe;
- ``bulk``: the request body and what each item's answer means (pure);
- ``retry``: one bulk request, its whole-request failures, the retry window;
- ``spool``: the disk spool's file format and segments; ``replay``: re-sending them;
- ``health``: up/down state and the supervisor task;
- ``deadletter``: documents refused for good; ``retention``: deleting old indices;
- ``metrics``: the sink's self-metrics.

Import :class:`ElasticsearchSink` from ``faaslens.ingest.sink_es.sink``; this
package module imports nothing, so the pure parts load without the client.
"""

"""The Elasticsearch client the sink, ``faaslens setup`` and retention share.

One factory builds it from :class:`~faaslens.ingest.config.IngestConfig`, so
every command talks to Elasticsearch with the same settings.
"""

from __future__ import annotations

from collections.abc import Callable

from elasticsearch import AsyncElasticsearch

from faaslens.ingest.config import IngestConfig

ClientFactory = Callable[[IngestConfig], AsyncElasticsearch]

# A health probe must answer quickly or count as down.
PROBE_TIMEOUT_S = 5.0


def make_client(
    config: IngestConfig, client_class: type[AsyncElasticsearch] = AsyncElasticsearch
) -> AsyncElasticsearch:
    """The default client: our own retries only, orjson for responses.

    ``client_class`` lets tests wrap the real client to inject faults.

    Raises:
        ValueError: the client refuses ``config.es_url``.
    """
    from elasticsearch.serializer import OrjsonSerializer

    serializer = OrjsonSerializer()
    return client_class(
        config.es_url,
        request_timeout=config.es_request_timeout_s,
        max_retries=0,
        retry_on_timeout=False,
        http_compress=False,  # loopback or LAN: compression costs more CPU than it saves
        serializers={
            "application/json": serializer,
            "application/vnd.elasticsearch+json": serializer,
        },
    )


async def probe(client: AsyncElasticsearch) -> None:
    """One cheap request that Elasticsearch answers when it can take writes.

    Raises:
        elasticsearch.ApiError, elastic_transport.TransportError, OSError: it cannot.
    """
    await client.options(request_timeout=PROBE_TIMEOUT_S).cluster.health()

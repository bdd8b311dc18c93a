"""``faaslens setup``: install the Elasticsearch templates and exit.

The worker installs them at start too; this command lets a deployment do it
ahead of time (or check that the cluster accepts them) without running it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from elasticsearch import ApiError, TransportError

from faaslens.ingest.config import ConfigError, IngestConfig, config_from_argv, connection
from faaslens.ingest.sink_es.client import explain, make_client
from faaslens.ingest.templates import install_templates, templates_for


async def _install(config: IngestConfig) -> list[str]:
    templates = templates_for(config)
    client = make_client(config)
    try:
        await client.cluster.health()
        await install_templates(client, templates)
    finally:
        await client.close()
    return [*templates.components, *templates.indices]


def main(argv: Sequence[str]) -> int:
    """Install the templates for the configured prefix; 0 on success, 1 on failure."""
    try:
        _, config = config_from_argv(argv, prog="faaslens setup")
        names = asyncio.run(_install(config))
    except ConfigError as exc:
        print(f"faaslens setup: {exc}", file=sys.stderr)
        return 2
    except (ApiError, TransportError, OSError) as exc:
        print(f"faaslens setup: {explain(exc, connection(config).endpoint)[1]}", file=sys.stderr)
        return 1
    except ValueError as exc:  # connection options the client refuses
        print(f"faaslens setup: {exc}", file=sys.stderr)
        return 2
    endpoint = connection(config).endpoint
    print(f"installed {len(names)} templates at {endpoint}: {', '.join(names)}")
    return 0

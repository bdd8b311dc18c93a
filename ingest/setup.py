"""``faaslens setup``: install the Elasticsearch templates and exit.

The worker installs them at start too; this command lets a deployment do it
ahead of time (or check that the cluster accepts them) without running it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from elasticsearch import ApiError, TransportError

from faaslens.commandline import EXIT_ELASTICSEARCH, EXIT_OK, EXIT_USAGE, fail
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


PROG = "faaslens setup"


def main(argv: Sequence[str]) -> int:
    """Install the templates for the configured prefix.

    Returns the exit status of :mod:`faaslens.commandline`: 0 installed, 2 a bad
    setting, 3 Elasticsearch unreachable or refusing the templates.
    """
    try:
        _, config = config_from_argv(
            argv,
            "setup",
            "Install the Elasticsearch index and component templates, then exit "
            "(the worker installs them at start too).",
        )
        names = asyncio.run(_install(config))
    except ConfigError as exc:
        return fail(PROG, str(exc), EXIT_USAGE)
    except (ApiError, TransportError, OSError) as exc:
        return fail(PROG, explain(exc, connection(config).endpoint)[1], EXIT_ELASTICSEARCH)
    except ValueError as exc:  # connection options the client refuses
        return fail(PROG, str(exc), EXIT_USAGE)
    endpoint = connection(config).endpoint
    print(f"installed {len(names)} templates at {endpoint}: {', '.join(names)}")
    return EXIT_OK

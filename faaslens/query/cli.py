"""``faaslens query``: look up invocations and search errors in Elasticsearch.

Exit status: 0 found, 1 nothing matched, 2 bad arguments, 3 Elasticsearch
unreachable or refusing the query.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from faaslens.ingest.config import ConfigError, add_connection_arguments, load_config

EXIT_OK = 0
EXIT_NOTHING = 1
EXIT_USAGE = 2
EXIT_ES = 3
DEFAULT_ES_URL = "http://127.0.0.1:9200"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--es-url",
        help=f"Elasticsearch URL, or several nodes comma-separated (default: $FAASLENS_ES_URL, "
        f"else the config file's, else {DEFAULT_ES_URL})",
    )
    common.add_argument(
        "--index-prefix",
        default=os.environ.get("FAASLENS_ES_INDEX_PREFIX", "faaslens"),
        help="index prefix the worker writes with (default: %(default)s)",
    )
    common.add_argument(
        "--config", help="the worker's TOML file: its Elasticsearch connection settings apply"
    )
    add_connection_arguments(common)
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")
    common.add_argument(
        "--timeout", type=float, default=10.0, help="request timeout in seconds (default: 10)"
    )

    parser = argparse.ArgumentParser(
        prog="faaslens query", description="Look up invocations and search errors."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    one = sub.add_parser(
        "invocation", parents=[common], help="one invocation: record, log lines in order, errors"
    )
    one.add_argument("invocation_id")

    many = sub.add_parser("invocations", parents=[common], help="recent invocations, filtered")
    many.add_argument("--function", help="faas.name")
    many.add_argument("--outcome", choices=["success", "failure", "unknown"])
    cold = many.add_mutually_exclusive_group()
    cold.add_argument("--coldstart", action="store_true", help="cold starts only")
    cold.add_argument("--warm", action="store_true", help="warm invocations only")
    many.add_argument("--min-duration", type=float, metavar="MS", help="at least MS milliseconds")
    many.add_argument("--since", default="1h", help="e.g. 15m, 2h, 7d or ISO 8601 (default 1h)")
    many.add_argument("--until", help="e.g. 5m or ISO 8601 (default: now)")
    many.add_argument("--limit", type=int, default=50, help="rows (default 50)")

    errs = sub.add_parser(
        "errors", parents=[common], help="errors grouped by fingerprint, most frequent first"
    )
    errs.add_argument("text", nargs="*", help="words to search in error messages, types, traces")
    errs.add_argument("--function", help="faas.name")
    errs.add_argument("--type", dest="error_type", help="error.type, exactly")
    errs.add_argument("--since", default="24h", help="e.g. 1h, 7d or ISO 8601 (default 24h)")
    errs.add_argument("--until", help="e.g. 5m or ISO 8601 (default: now)")
    errs.add_argument("--limit", type=int, default=20, help="fingerprints (default 20)")

    loss = sub.add_parser(
        "loss",
        parents=[common],
        help="frames senders sent that never reached Elasticsearch, across all workers",
    )
    loss.add_argument("--function", help="faas.name")
    loss.add_argument("--since", default="1h", help="e.g. 15m, 2h, 7d or ISO 8601 (default 1h)")
    loss.add_argument("--until", help="e.g. 5m or ISO 8601 (default: now)")
    return parser


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``faaslens query`` with ``argv`` (without the leading ``query``)."""
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    from faaslens.query import render
    from faaslens.query.client import InvocationFilter, QueryClient, QueryError
    from faaslens.query.timespec import TimeSpecError, parse_time

    try:
        since = parse_time(args.since) if getattr(args, "since", None) else None
        until = parse_time(args.until) if getattr(args, "until", None) else None
    except TimeSpecError as exc:
        parser.error(str(exc))
    if getattr(args, "limit", 1) < 1:
        parser.error("--limit must be at least 1")

    try:
        config = load_config(args)  # connection settings: flags < env < file, as the worker
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        with QueryClient(config, args.index_prefix, timeout_s=args.timeout) as client:
            if args.command == "invocation":
                view = client.invocation(args.invocation_id)
                if not view.found:
                    print(
                        f"no invocation {args.invocation_id!r} in {args.index_prefix}-* "
                        f"at {client.es_url}",
                        file=sys.stderr,
                    )
                    return EXIT_NOTHING
                if args.json:
                    _print_json(view.as_json())
                else:
                    print(render.invocation_view(view))
                return EXIT_OK

            if args.command == "invocations":
                flt = InvocationFilter(
                    function=args.function,
                    outcome=args.outcome,
                    coldstart=True if args.coldstart else (False if args.warm else None),
                    min_duration_ms=args.min_duration,
                    since_ms=since,
                    until_ms=until,
                    limit=args.limit,
                )
                docs = client.invocations(flt)
                if not docs:
                    print("no invocations match", file=sys.stderr)
                    return EXIT_NOTHING
                if args.json:
                    _print_json(docs)
                else:
                    print(render.invocations_table(docs))
                return EXIT_OK

            if args.command == "loss":
                report = client.loss(since_ms=since, until_ms=until, function=args.function)
                if not report.senders:
                    print("no frames in the window", file=sys.stderr)
                    return EXIT_NOTHING
                if args.json:
                    _print_json(report.as_json())
                else:
                    print(render.loss_table(report))
                return EXIT_OK

            groups = client.errors(
                " ".join(args.text) or None,
                since_ms=since,
                until_ms=until,
                function=args.function,
                error_type=args.error_type,
                limit=args.limit,
            )
            if not groups:
                print("no errors match", file=sys.stderr)
                return EXIT_NOTHING
            if args.json:
                _print_json([g.as_json() for g in groups])
            else:
                print(render.errors_table(groups))
            return EXIT_OK
    except QueryError as exc:
        print(f"faaslens query: {exc}", file=sys.stderr)
        return EXIT_ES


if __name__ == "__main__":
    sys.exit(main())

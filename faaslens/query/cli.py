"""``faaslens query``: look up invocations and search errors in Elasticsearch.

It reads the worker's configuration sources (``--config``, ``FAASLENS_*``,
flags) for the settings it shares with it: ``es_url``, ``es_index_prefix``,
``es_request_timeout_s``. Exit statuses are those of every command
(:mod:`faaslens.commandline`): 0 found, 1 nothing matched, 2 bad arguments, 3
Elasticsearch unreachable or refusing the query.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from faaslens.commandline import (
    EXIT_ELASTICSEARCH,
    EXIT_EMPTY,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    bounded,
    fail,
    non_empty,
)
from faaslens.ingest.config import ConfigError, add_arguments, load_config
from faaslens.protocol import MAX_EXECUTION_ID

PROG = "faaslens query"
TIME_HELP = "15m, 2h, 7d (that long ago) or an ISO 8601 time"


def _window_and_limit(parser: argparse.ArgumentParser, since: str, limit: int, what: str) -> None:
    """The options both listings share: function, time window, how many rows."""
    parser.add_argument("--function", metavar="NAME", help="faas.name, exactly (default: any)")
    parser.add_argument("--since", default=since, help=f"from: {TIME_HELP} (default: {since})")
    parser.add_argument("--until", help=f"to: {TIME_HELP} (default: now)")
    parser.add_argument(
        "--limit",
        type=bounded(int, 1),
        default=limit,
        metavar="N",
        help=f"{what} listed, at most (default: {limit})",
    )


def _invocation_id(text: str) -> str:
    """An argparse ``type``: an id the protocol allows (a longer one was never stored)."""
    if len(non_empty(text)) > MAX_EXECUTION_ID:
        raise argparse.ArgumentTypeError(
            f"{len(text)} characters: invocation ids have at most {MAX_EXECUTION_ID}"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", help="print JSON instead of tables (default: tables)"
    )
    add_arguments(common, "query")

    parser = Parser(
        prog=PROG,
        description="Look up invocations and search errors in the worker's Elasticsearch "
        "indices. Run 'faaslens query <command> --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    one = sub.add_parser(
        "invocation",
        parents=[common],
        help="one invocation: record, log lines in order, errors",
        description="One invocation: its record, its log lines in order, its errors.",
    )
    one.add_argument(
        "invocation_id",
        type=_invocation_id,
        help=f"faas.execution, as the platform gave it (1-{MAX_EXECUTION_ID} characters)",
    )

    many = sub.add_parser(
        "invocations",
        parents=[common],
        help="recent invocations, filtered",
        description="Recent invocations, newest first, filtered.",
    )
    many.add_argument(
        "--outcome",
        choices=["success", "failure", "unknown"],
        help="only this event.outcome (default: any)",
    )
    many.add_argument(
        "--coldstart",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cold starts only; --no-coldstart: warm invocations only (default: both)",
    )
    many.add_argument(
        "--min-duration",
        type=bounded(float, 0),
        metavar="MS",
        help="handler duration of at least this many milliseconds (default: any)",
    )
    _window_and_limit(many, since="1h", limit=50, what="invocations")

    errs = sub.add_parser(
        "errors",
        parents=[common],
        help="errors grouped by fingerprint, most frequent first",
        description="Errors grouped by fingerprint (error.grouping_key), most frequent first.",
    )
    errs.add_argument(
        "text", nargs="*", help="words to search in error messages, types and stack traces"
    )
    errs.add_argument(
        "--type", dest="error_type", metavar="TYPE", help="error.type, exactly (default: any)"
    )
    _window_and_limit(errs, since="24h", limit=20, what="error fingerprints")

    loss = sub.add_parser(
        "loss",
        parents=[common],
        help="frames senders sent that never reached Elasticsearch, across all workers",
        description="Per function and per sender, the frames missing between the first and "
        "the last sequence number stored in the window, whichever worker took them "
        "(docs/reading.md, 'Loss across workers and restarts').",
    )
    loss.add_argument("--function", metavar="NAME", help="faas.name, exactly (default: any)")
    loss.add_argument("--since", default="1h", help=f"from: {TIME_HELP} (default: 1h)")
    loss.add_argument("--until", help=f"to: {TIME_HELP} (default: now)")
    return parser


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``faaslens query`` with ``argv`` (without the leading ``query``); return the
    exit status."""
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = load_config(args, command="query")
    except ConfigError as exc:
        return fail(PROG, str(exc), EXIT_USAGE)

    from faaslens.query.timespec import TimeSpecError, parse_time

    try:
        since = parse_time(args.since) if getattr(args, "since", None) else None
        until = parse_time(args.until) if getattr(args, "until", None) else None
    except TimeSpecError as exc:
        parser.error(str(exc))
    if since is not None and until is not None and until <= since:
        parser.error(f"--until ({args.until}) is not after --since ({args.since})")

    # After the arguments are checked: these bring the Elasticsearch client (~0.5 s).
    from faaslens.query import render
    from faaslens.query.client import InvocationFilter, QueryClient, QueryError

    url, prefix = config.es_url, config.es_index_prefix
    try:
        # The whole config: its nodes, TLS settings and credentials, as the worker uses them.
        with QueryClient(config, prefix, timeout_s=config.es_request_timeout_s) as client:
            if args.command == "invocation":
                view = client.invocation(args.invocation_id)
                if not view.found:
                    return fail(
                        PROG,
                        f"no invocation {args.invocation_id!r} in {prefix}-* at {url}",
                        EXIT_EMPTY,
                    )
                if args.json:
                    _print_json(view.as_json())
                else:
                    print(render.invocation_view(view))
                return EXIT_OK

            if args.command == "invocations":
                flt = InvocationFilter(
                    function=args.function,
                    outcome=args.outcome,
                    coldstart=args.coldstart,
                    min_duration_ms=args.min_duration,
                    since_ms=since,
                    until_ms=until,
                    limit=args.limit,
                )
                docs = client.invocations(flt)
                if not docs:
                    return fail(PROG, "no invocations match", EXIT_EMPTY)
                if args.json:
                    _print_json(docs)
                else:
                    print(render.invocations_table(docs))
                return EXIT_OK

            if args.command == "loss":
                report = client.loss(since_ms=since, until_ms=until, function=args.function)
                if not report.senders:
                    return fail(PROG, "no frames in the window", EXIT_EMPTY)
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
                return fail(PROG, "no errors match", EXIT_EMPTY)
            if args.json:
                _print_json([g.as_json() for g in groups])
            else:
                print(render.errors_table(groups))
            return EXIT_OK
    except QueryError as exc:
        return fail(PROG, str(exc), EXIT_ELASTICSEARCH)


if __name__ == "__main__":
    sys.exit(main())

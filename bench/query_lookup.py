"""Reading-side latency: one invocation with its logs by id, and an error search.

Loads N invocation records (default 1,000,000) with their log lines (3 each)
and error documents into the local Elasticsearch twice, in the same run:

* **faaslens**: frames validated by the worker's validator, bulk bodies built
  by the sink's code, into daily indices created from ``es-templates/``
  (keyword ids, typed fields);
* **naive**: the same documents in one index per kind with no template
  (Elasticsearch's dynamic mappings: strings become text + keyword, the epoch
  millisecond timestamp a long).

Then it measures, over random ids / words:

* lookup of one invocation with its logs and errors by id: the faaslens query
  CLI's path (one ``_msearch`` of ``term`` filters), versus the naive way (a
  wildcard query over the dynamic fields of each index);
* an error text search grouped by fingerprint over the last 24 h: the CLI's
  ``errors`` query, versus a wildcard ``query_string`` over all dynamic fields
  with a terms aggregation on the dynamic ``.keyword`` sub-field.

Goals: lookup p99 < 50 ms, error search p99 < 300 ms.

Data is kept under fixed prefixes and reused by later runs (``--reload`` to
rebuild, ``--drop`` to delete). Run::

    python bench/query_lookup.py --quick            # 50,000 invocations
    python bench/query_lookup.py                    # 1,000,000 invocations
    python bench/query_lookup.py --es-url http://127.0.0.1:9250
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch, Elasticsearch, NotFoundError

from faaslens.ingest.config import IngestConfig
from faaslens.ingest.events import Doc
from faaslens.ingest.sink_es.bulk import build_body
from faaslens.ingest.templates import install_templates, templates_for
from faaslens.ingest.validate import Validator
from faaslens.query.client import QueryClient

FUNCTIONS = [f"fn-{name}" for name in ("checkout", "search", "resize", "mailer", "auth", "cart")]
SERVICES = ["payments", "inventory", "shipping", "pricing", "ledger", "catalog", "geocoder"]
ERROR_KINDS = [
    ("TimeoutError", "upstream {svc} timed out after {n} ms"),
    ("ConnectionResetError", "connection reset by {svc} while reading response"),
    ("KeyError", "missing key {svc}_id in event payload"),
    ("ValueError", "invalid quantity {n} for {svc} item"),
    ("PermissionError", "{svc} denied access to bucket object"),
]
LOG_LINES = ["received request", "calling {svc}", "done in {n} ms"]
ERROR_RATE = 0.05
SPAN_MS = 48 * 3_600_000  # timestamps spread over the last 48 h
EVENTS_PER_FRAME = 200
BULK_DOCS = 5000


def fingerprint(kind: int, svc: str) -> str:
    return hashlib.sha1(f"{kind}:{svc}".encode()).hexdigest()[:16]


def frames(n: int, now_ms: int, seed: int) -> Iterator[bytes]:
    """Protocol frames for ``n`` invocations (3 log lines each, some failures)."""
    rng = random.Random(seed)
    seq = 0
    batch: list[dict[str, Any]] = []
    fn = FUNCTIONS[0]
    for i in range(n):
        fn = FUNCTIONS[i % len(FUNCTIONS)]
        exec_id = f"{seed:02x}{i:010x}-{rng.getrandbits(64):016x}"
        ts = now_ms - rng.randrange(SPAN_MS)
        svc = rng.choice(SERVICES)
        ms = rng.randrange(2, 900)
        inv: dict[str, Any] = {
            "t": "inv",
            "faas.execution": exec_id,
            "@timestamp": ts,
            "event.duration": ms * 1_000_000,
            "event.outcome": "success",
            "faas.coldstart": i % 50 == 0,
            "faas.trigger.type": "http",
            "faas.billed_duration": ms + 1,
            "faas.mem_usage": rng.randrange(60, 400) << 20,
            "faas.cost.usd": 0.0000000021 * (ms + 1),
        }
        for s, line in enumerate(LOG_LINES):
            batch.append(
                {
                    "t": "log",
                    "faas.execution": exec_id,
                    "@timestamp": ts + s,
                    "event.sequence": s,
                    "log.level": "info",
                    "message": line.format(svc=svc, n=ms),
                }
            )
        if rng.random() < ERROR_RATE:
            kind = rng.randrange(len(ERROR_KINDS))
            etype, template = ERROR_KINDS[kind]
            inv["event.outcome"] = "failure"
            inv["error.type"] = etype
            inv["error.message"] = template.format(svc=svc, n=ms)
            inv["error.stack_trace"] = f'File "handler.py", line {10 + kind}, in handle\n{etype}'
            inv["error.grouping_key"] = fingerprint(kind, svc)
        batch.append(inv)
        if len(batch) >= EVENTS_PER_FRAME:
            seq += 1
            yield _frame(seq, fn, batch)
            batch = []
    if batch:
        yield _frame(seq + 1, fn, batch)


def _frame(seq: int, fn: str, events: list[dict[str, Any]]) -> bytes:
    res = {"faas.name": fn, "cloud.provider": "aws", "cloud.region": "eu-west-1"}
    return orjson.dumps({"v": 1, "src": "bench", "seq": seq, "res": res, "ev": events})


def documents(n: int, now_ms: int, seed: int) -> Iterator[list[Doc]]:
    """Chunks of documents, as the worker's validator builds them."""
    validator = Validator()
    chunk: list[Doc] = []
    for frame in frames(n, now_ms, seed):
        result = validator.validate(frame)
        if result.rejected or result.event_rejections:
            raise RuntimeError(
                f"bench frame rejected: {result.rejected or result.event_rejections}"
            )
        chunk.extend(result.docs)
        if len(chunk) >= BULK_DOCS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def naive_body(docs: list[Doc], naive_prefix: str) -> bytes:
    """The same sources into one index per kind, no template."""
    parts: list[bytes] = []
    for d in docs:
        action = {"create": {"_index": f"{naive_prefix}-{d.kind}", "_id": d.doc_id}}
        parts += [orjson.dumps(action), b"\n", d.source, b"\n"]
    return b"".join(parts)


def bulk(es: Elasticsearch, body: bytes) -> None:
    resp = es.perform_request(
        "POST",
        "/_bulk",
        body=body,
        headers={"content-type": "application/x-ndjson", "accept": "application/json"},
    ).body
    if resp.get("errors"):
        bad = [
            item
            for item in resp["items"]
            for r in item.values()
            if r.get("status", 200) >= 300 and r.get("status") != 409
        ]
        if bad:
            raise RuntimeError(f"bulk errors, first: {bad[0]}")


def count(es: Elasticsearch, pattern: str) -> int:
    resp = es.perform_request(
        "GET",
        f"/{pattern}/_count",
        params={"ignore_unavailable": "true", "allow_no_indices": "true"},
        headers={"accept": "application/json"},
    ).body
    return int(resp["count"])


def drop(es: Elasticsearch, prefix: str) -> None:
    """Delete the indices and templates named ``<prefix>-*``."""
    rows = es.cat.indices(index=f"{prefix}-*", format="json", h="index").body
    for row in rows if isinstance(rows, list) else []:
        es.indices.delete(index=row["index"])
    for kind, key in (
        ("_index_template", "index_templates"),
        ("_component_template", "component_templates"),
    ):
        try:
            found = es.perform_request(
                "GET", f"/{kind}/{prefix}-*", headers={"accept": "application/json"}
            ).body
        except NotFoundError:
            continue
        for template in found.get(key, []):
            es.perform_request("DELETE", f"/{kind}/{template['name']}")


def load(es: Elasticsearch, es_url: str, prefix: str, naive: str, n: int) -> float:
    """Index both copies; returns seconds taken."""
    config = IngestConfig(es_url=es_url, es_index_prefix=prefix)

    async def templates() -> None:
        client = AsyncElasticsearch(es_url)
        try:
            await install_templates(client, templates_for(config))
        finally:
            await client.close()

    asyncio.run(templates())
    started = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: list[Any] = []
        for chunk in documents(n, int(time.time() * 1000), seed=1):
            pending.append(pool.submit(bulk, es, build_body(chunk, prefix)))
            pending.append(pool.submit(bulk, es, naive_body(chunk, naive)))
            done += len(chunk)
            while len(pending) > 4:
                pending.pop(0).result()
            if done % 200_000 < len(chunk):
                print(f"  loaded {done:,} documents per copy", flush=True)
        for fut in pending:
            fut.result()
    es.indices.refresh(index=f"{prefix}-*,{naive}-*")
    return time.perf_counter() - started


def sample_ids(es: Elasticsearch, index: str, k: int, seed: int) -> list[str]:
    """``k`` random invocation ids that exist."""
    resp = es.search(
        index=index,
        size=k,
        query={"function_score": {"random_score": {"seed": seed, "field": "_seq_no"}}},
        source_includes=["faas.execution"],
    ).body
    return [h["_source"]["faas.execution"] for h in resp["hits"]["hits"]]


def timed(fn: Callable[[str], bool], args: list[str]) -> list[float]:
    """Milliseconds per call; every call must find what it looks for."""
    out = []
    for arg in args:
        t0 = time.perf_counter()
        found = fn(arg)
        out.append((time.perf_counter() - t0) * 1000)
        if not found:
            raise RuntimeError(f"{fn.__name__}: nothing found for {arg!r}")
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(name: str, ours: list[float], naive: list[float], goal_ms: float) -> None:
    o50, o99, n50, n99 = pct(ours, 50), pct(ours, 99), pct(naive, 50), pct(naive, 99)
    verdict = "meets" if o99 < goal_ms else "MISSES"
    print(f"\n{name}  ({len(ours)} queries each)")
    print(f"  {'':<10}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    print(f"  {'faaslens':<10}{o50:>10.1f}{o99:>10.1f}{statistics.fmean(ours):>10.1f}")
    print(f"  {'naive':<10}{n50:>10.1f}{n99:>10.1f}{statistics.fmean(naive):>10.1f}")
    print(f"  naive/faaslens: p50 x{n50 / o50:.1f}, p99 x{n99 / o99:.1f}")
    print(f"  goal p99 < {goal_ms:.0f} ms: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 invocations")
    parser.add_argument("--count", type=int, help="invocations to load (default 1,000,000)")
    parser.add_argument(
        "--es-url",
        default=os.environ.get("ES_URL")
        or os.environ.get("FAASLENS_ES_URL", "http://127.0.0.1:9200"),
    )
    parser.add_argument("--lookups", type=int, default=200, help="queries per measurement")
    parser.add_argument("--reload", action="store_true", help="delete and load again")
    parser.add_argument("--drop", action="store_true", help="delete the bench indices and exit")
    args = parser.parse_args(argv)
    n = args.count or (50_000 if args.quick else 1_000_000)
    prefix = f"fqbench{n}"
    naive = f"fqnaive{n}"
    es = Elasticsearch(args.es_url, request_timeout=120)
    if args.drop or args.reload:
        drop(es, prefix)
        drop(es, naive)
        if args.drop:
            return 0

    expected_logs = n * len(LOG_LINES)
    have = (count(es, f"{prefix}-invocations-*"), count(es, f"{prefix}-logs-*"))
    have_naive = (count(es, f"{naive}-invocations"), count(es, f"{naive}-logs"))
    print(f"Elasticsearch {args.es_url}, {n:,} invocations, {expected_logs:,} log lines per copy")
    if have == have_naive == (n, expected_logs):
        print("reusing the indices loaded by an earlier run")
    else:
        drop(es, prefix)
        drop(es, naive)
        seconds = load(es, args.es_url, prefix, naive, n)
        total = count(es, f"{prefix}-*")
        print(
            f"loaded {total:,} documents per copy (both copies) in {seconds:.1f} s "
            f"({2 * total / seconds:,.0f} docs/s)"
        )

    rng = random.Random(42)
    ids = sample_ids(es, f"{prefix}-invocations-*", args.lookups, seed=rng.randrange(1 << 30))
    client = QueryClient(args.es_url, prefix, timeout_s=60)

    def ours_lookup(exec_id: str) -> bool:
        view = client.invocation(exec_id)
        return view.record is not None and len(view.logs) == len(LOG_LINES)

    def naive_lookup(exec_id: str) -> bool:
        query = {"query_string": {"query": f"*{exec_id}*", "default_field": "*"}}
        searches: list[dict[str, Any]] = []
        for kind, extra in (
            ("invocations", {"size": 1}),
            ("logs", {"size": 10_000, "sort": [{"event.sequence": "asc"}]}),
            ("errors", {"size": 100}),
        ):
            searches += [
                {"index": f"{naive}-{kind}", "ignore_unavailable": True},
                {"query": query, **extra},
            ]
        responses = es.msearch(searches=searches).body["responses"]
        return bool(responses[0]["hits"]["hits"]) and len(responses[1]["hits"]["hits"]) == len(
            LOG_LINES
        )

    for exec_id in ids[:10]:  # warm both paths (caches, connections)
        ours_lookup(exec_id)
        naive_lookup(exec_id)
    ours = timed(ours_lookup, ids)
    naive_times = timed(naive_lookup, ids)
    report("lookup by invocation id (record + logs in order + errors)", ours, naive_times, 50)

    words = [rng.choice([*SERVICES, "timed", "reset", "denied", "invalid"]) for _ in ids]
    since = int(time.time() * 1000) - 24 * 3_600_000

    def ours_errors(word: str) -> bool:
        return bool(client.errors(word, since_ms=since, limit=20))

    def naive_errors(word: str) -> bool:
        body: dict[str, Any] = {
            "size": 0,
            "query": {
                "bool": {
                    "must": [{"query_string": {"query": f"*{word}*", "default_field": "*"}}],
                    "filter": [{"range": {"@timestamp": {"gte": since}}}],
                }
            },
            "aggs": {
                "fingerprints": {
                    "terms": {"field": "error.grouping_key.keyword", "size": 20},
                    "aggs": {
                        "first_seen": {"min": {"field": "@timestamp"}},
                        "last_seen": {"max": {"field": "@timestamp"}},
                        "sample": {"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}]}},
                    },
                }
            },
        }
        resp = es.search(index=f"{naive}-errors", **body).body
        return bool(resp["aggregations"]["fingerprints"]["buckets"])

    for word in words[:10]:
        ours_errors(word)
        naive_errors(word)
    ours = timed(ours_errors, words)
    naive_times = timed(naive_errors, words)
    report("error search, last 24 h, grouped by fingerprint", ours, naive_times, 300)
    client.close()
    es.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

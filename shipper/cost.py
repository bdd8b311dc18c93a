"""Estimated cost of one invocation from a dated, overridable price table.

Figures are list prices in USD, on-demand, without free grants, savings plans
or committed-use discounts (those apply per account per month and cannot be
known inside one invocation). Network egress and storage are not included.

Sources, as read on the date in each ``price_id``:

* AWS Lambda pricing page (aws.amazon.com/lambda/pricing), 2025-01, unchanged since:
  x86_64 $0.0000166667 per GB-s, arm64 $0.0000133334 per GB-s (first pricing tier),
  $0.20 per 1M requests; duration rounded up to 1 ms.
* Azure Functions pricing page (azure.microsoft.com/pricing/details/functions), and
  "Estimating Consumption plan costs" (learn.microsoft.com), 2025-01: Consumption plan
  $0.000016 per GB-s, $0.20 per 1M executions; observed memory rounded up to the
  nearest 128 MB (at most 1,536 MB), execution time rounded up to 1 ms, with a minimum
  of 100 ms and 128 MB per execution.
* Google Cloud Functions (1st gen) pricing page (cloud.google.com/functions/pricing-1stgen),
  2025-01: Tier 1 $0.0000025 per GB-s + $0.0000100 per GHz-s, Tier 2 $0.0000035 per GB-s
  + $0.0000140 per GHz-s, $0.40 per 1M invocations; compute rounded up to 100 ms; the CPU
  clock follows the memory size.
* Cloud Run pricing page (cloud.google.com/run/pricing), which prices Cloud Run functions
  (2nd gen), 2025-01, request-based billing: Tier 1 $0.00002400 per vCPU-s + $0.00000250
  per GiB-s, Tier 2 $0.00003360 per vCPU-s + $0.00000350 per GiB-s, $0.40 per 1M
  requests; rounded up to 100 ms.

The figures live in ``prices.json`` beside this module (shared with the NodeJS shipper).
Override any figure with ``FAASLENS_PRICE_*`` (see config); the row's ``price_id``
then becomes ``<id>-custom`` unless ``FAASLENS_PRICE_PRICE_ID`` names it.
"""

from __future__ import annotations

import os

import orjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

_MIB = 1024 * 1024
_GIB = 1024 * _MIB


class PriceRow:
    """One dated row of the price table."""

    __slots__ = (
        "max_mb",
        "mem_from_rss",
        "min_mb",
        "min_ms",
        "per_gb_s",
        "per_ghz_s",
        "per_request",
        "per_vcpu_s",
        "price_id",
        "round_mb",
        "round_ms",
    )

    def __init__(
        self,
        price_id: str,
        *,
        per_request: float,
        per_gb_s: float,
        per_ghz_s: float = 0.0,
        per_vcpu_s: float = 0.0,
        round_ms: int = 1,
        min_ms: int = 0,
        round_mb: int = 0,
        min_mb: int = 0,
        max_mb: int = 0,
        mem_from_rss: bool = False,
    ) -> None:
        self.price_id = price_id
        self.per_request = per_request
        self.per_gb_s = per_gb_s
        self.per_ghz_s = per_ghz_s
        self.per_vcpu_s = per_vcpu_s
        self.round_ms = round_ms
        self.min_ms = min_ms
        self.round_mb = round_mb
        self.min_mb = min_mb
        self.max_mb = max_mb
        # Azure Consumption bills observed memory, not a configured size.
        self.mem_from_rss = mem_from_rss

    def with_overrides(self, prices: Mapping[str, Any]) -> PriceRow:
        """A copy with user-supplied figures (``FAASLENS_PRICE_*``)."""
        row = PriceRow(self.price_id, per_request=self.per_request, per_gb_s=self.per_gb_s)
        for name in self.__slots__:
            setattr(row, name, getattr(self, name))
        changed = False
        for name in ("per_request", "per_gb_s", "per_ghz_s", "per_vcpu_s"):
            if name in prices:
                setattr(row, name, float(prices[name]))
                changed = True
        if "price_id" in prices:
            row.price_id = str(prices["price_id"])[:64]
        elif changed:
            row.price_id = f"{self.price_id}-custom"[:64]
        return row


# The table itself is data (prices.json beside this module), read by the NodeJS shipper too,
# so the two cannot drift.
PRICE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices.json")


def _load(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        data: dict[str, Any] = orjson.loads(fh.read())
    return data


_TABLE = _load(PRICE_FILE)
PRICES: dict[str, PriceRow] = {key: PriceRow(**row) for key, row in _TABLE["rows"].items()}

# Tier 1 regions (the others are Tier 2), as listed on the pricing pages on that date.
GCP_GEN1_TIER1 = frozenset(_TABLE["gcp_gen1_tier1_regions"])
GCP_GEN2_TIER1 = frozenset(_TABLE["gcp_gen2_tier1_regions"])

# GCP 1st gen: memory size (MB) -> CPU clock (GHz) it comes with.
GCP_GEN1_GHZ = tuple((int(mb), float(v)) for mb, v in _TABLE["gcp_gen1_ghz_by_mb"])
# Cloud Run functions default CPU for a memory size (MB) -> vCPU.
GCP_GEN2_VCPU = tuple((int(mb), float(v)) for mb, v in _TABLE["gcp_gen2_vcpu_by_mb"])


def _lookup(table: tuple[tuple[int, float], ...], memory_mb: float) -> float:
    for size, value in table:
        if memory_mb <= size:
            return value
    return table[-1][1]


# Rows whose platform bills a cold start's init phase with the invocation: AWS Lambda
# on-demand functions since 2025-08-01 (the REPORT line's Billed Duration covers Init
# Duration + Duration). Provisioned concurrency and SnapStart have no cold start here.
_BILLS_INIT = frozenset({"aws-x86_64", "aws-arm64"})


class Estimator:
    """Prices invocations of one function (provider, architecture, region fixed).

    ``bills_init``: the platform bills a cold start's init phase too; the caller adds
    the init duration to the invocation's for the first one.
    """

    __slots__ = ("_cache", "_cpu", "_ns_per_unit", "bills_init", "row")

    def __init__(self, row: PriceRow, cpu: float | None = None, bills_init: bool = False) -> None:
        self.row = row
        self.bills_init = bills_init
        self._cpu = cpu
        self._ns_per_unit = row.round_ms * 1_000_000
        # (billed ms, MB) -> result: most invocations of a function bill the same few values.
        self._cache: dict[tuple[int, int], tuple[int, float, float]] = {}

    def billed_ms(self, duration_ns: int) -> int:
        """Duration after the provider's rounding (and minimum)."""
        units = -(-duration_ns // self._ns_per_unit)  # ceiling division
        billed = units * self.row.round_ms
        return max(billed, self.row.min_ms)

    def estimate(
        self, duration_ns: int, memory_bytes: int | None, rss_bytes: int | None
    ) -> tuple[int, float, float] | None:
        """(billed ms, GB-seconds, USD) or None when the memory size is unknown."""
        row = self.row
        billed = self.billed_ms(duration_ns)
        if row.mem_from_rss:
            if not rss_bytes:
                return None
            mb = -(-rss_bytes // _MIB)
            mb = -(-mb // row.round_mb) * row.round_mb
            mb = min(max(mb, row.min_mb), row.max_mb)
        elif memory_bytes:
            mb = memory_bytes // _MIB
        else:
            return None
        key = (billed, mb)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        seconds = billed / 1000.0
        gb_s = mb / 1024.0 * seconds
        usd = row.per_request + gb_s * row.per_gb_s
        if row.per_ghz_s:
            usd += _lookup(GCP_GEN1_GHZ, mb) * seconds * row.per_ghz_s
        if row.per_vcpu_s:
            cpu = self._cpu if self._cpu else _lookup(GCP_GEN2_VCPU, mb)
            usd += cpu * seconds * row.per_vcpu_s
        result = (billed, round(gb_s, 9), round(usd, 12))
        if len(self._cache) < 1024:
            self._cache[key] = result
        return result


def price_key(provider: str, arch: str, region: str | None, gcp_generation: int) -> str | None:
    """The table row for a function, or None where no price applies (local processes)."""
    if provider == "aws":
        return "aws-arm64" if arch == "arm64" else "aws-x86_64"
    if provider == "azure":
        return "azure-consumption"
    if provider == "gcp":
        tier1 = GCP_GEN1_TIER1 if gcp_generation == 1 else GCP_GEN2_TIER1
        tier = "tier1" if region is None or region in tier1 else "tier2"
        return f"gcp-gen{gcp_generation}-{tier}"
    return None


def estimator_for(
    provider: str,
    arch: str,
    region: str | None,
    *,
    gcp_generation: int = 2,
    cpu: float | None = None,
    prices: Mapping[str, Any] | None = None,
) -> Estimator | None:
    """An :class:`Estimator` for a function, with user overrides applied."""
    key = price_key(provider, arch, region, gcp_generation)
    if key is None:
        if not prices or "per_gb_s" not in prices:
            return None
        base = PriceRow("custom", per_request=0.0, per_gb_s=0.0)
    else:
        base = PRICES[key]
    row = base.with_overrides(prices) if prices else base
    return Estimator(row, cpu, bills_init=key in _BILLS_INIT)

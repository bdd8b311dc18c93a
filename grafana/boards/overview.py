"""Overview: how are my functions doing (Prometheus aggregates, per function)."""

from __future__ import annotations

from grafana.kit import (
    RI,
    UID_OVERVIEW,
    Board,
    increase,
    prom,
    prom_var,
    quantile,
    quantiles,
    rate,
    stat,
    table,
    timeseries,
    transformation,
    unit_override,
)


def _ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator per function; 0 (not a gap) when the numerator has no series."""
    return f"({rate(numerator)} or {rate(denominator)} * 0) / {rate(denominator)}"


def _custom(kind: str) -> str:
    """The custom metrics a function sends, of one kind, filtered by function only."""
    return f'{{__name__=~"$custom_{kind}", function=~"$function"}}'


def build() -> Board:
    board = Board(UID_OVERVIEW, "faaslens / Overview")
    board.variables(
        prom_var("function", "label_values(faas_invocations_total, function)"),
        prom_var("environment", "label_values(faas_invocations_total, environment)"),
        prom_var("provider", "label_values(faas_invocations_total, provider)"),
        prom_var("region", "label_values(faas_invocations_total, region)"),
        prom_var(
            "custom_counter",
            "metrics(^faas_custom_.+_total$)",
            label="custom counter",
            hidden=True,
        ),
        prom_var(
            "custom_histogram",
            "metrics(^faas_custom_.+_bucket$)",
            label="custom histogram",
            hidden=True,
        ),
    )
    invocations = rate("faas_invocations_total", by="")
    usd_day = "cost USD/day at the last hour's rate"
    return board.add(
        stat("Invocations/s", prom(invocations, "all"), unit="reqps"),
        stat(
            "Error ratio",
            prom(f"({rate('faas_errors_total', by='')} or vector(0)) / {invocations}", "all"),
            unit="percentunit",
        ),
        stat(
            "p95 duration",
            prom(quantile("0.95", "faas_invoke_duration_seconds", by="le"), "p95"),
            unit="s",
        ),
        stat(
            "Estimated cost, last 24h",
            prom(increase("faas_cost_usd_total", "1d", by=""), "USD"),
            unit="currencyUSD",
        ),
        timeseries(
            "Invocations/s by function",
            prom(rate("faas_invocations_total"), "{{function}}"),
            unit="reqps",
        ),
        timeseries(
            "Error % by function",
            prom(_ratio("faas_errors_total", "faas_invocations_total"), "{{function}}"),
            unit="percentunit",
            description="Failed invocations (event.outcome = failure) over all invocations.",
        ),
        timeseries(
            "Duration p50 / p95 / p99",
            quantiles("faas_invoke_duration_seconds", ["0.5", "0.95", "0.99"], exemplar=True),
            unit="s",
            w=24,
            description="Handler duration from the histogram. Exemplar dots carry the "
            "invocation id: click one to open the invocation.",
        ),
        timeseries(
            "Did not finish: started - finished, and unfinished (per second)",
            [
                prom(
                    f"{rate('faas_invocations_started_total')} - {rate('faas_invocations_total')}",
                    "started - finished {{function}}",
                ),
                prom(rate("faas_invocations_unfinished_total"), "unfinished {{function}}"),
            ],
            unit="reqps",
            description="Invocations that announced their start minus those whose record "
            "came: what is running or never ended. Unfinished: no record by the function's "
            "timeout plus the worker's grace period (the process died: out of memory, a "
            "crash, a hard timeout). Functions whose shipper sends no start events have none.",
        ),
        stat(
            "Unfinished invocations, last 24h",
            prom(increase("faas_invocations_unfinished_total", "1d", by=""), "unfinished"),
            unit="short",
        ),
        timeseries(
            "Cold starts",
            prom(
                increase("faas_coldstarts_total", RI),
                "{{function}}",
            ),
        ),
        timeseries(
            "Cold-start ratio",
            prom(_ratio("faas_coldstarts_total", "faas_invocations_total"), "{{function}}"),
            unit="percentunit",
        ),
        timeseries(
            "Init duration p50 / p95 (cold starts)",
            quantiles("faas_init_duration_seconds", ["0.5", "0.95"]),
            unit="s",
        ),
        timeseries(
            "Memory used (p95 peak RSS) vs configured",
            [
                prom(quantile("0.95", "faas_mem_usage_bytes"), "used p95 {{function}}"),
                # GB-seconds / billed seconds = configured GiB: no extra series needed.
                prom(
                    f"{rate('faas_billed_gigabyte_seconds_total')} / "
                    f"{rate('faas_billed_duration_seconds_total')} * 1073741824",
                    "configured {{function}}",
                ),
            ],
            unit="bytes",
        ),
        table(
            "Billed GB-seconds and estimated cost per function (last 24h)",
            [
                prom(
                    increase("faas_billed_gigabyte_seconds_total", "1d"),
                    "",
                    instant=True,
                ),
                prom(
                    increase("faas_cost_usd_total", "1d"),
                    "",
                    instant=True,
                ),
                prom(f"{rate('faas_cost_usd_total', window='1h')} * 86400", "", instant=True),
            ],
            h=8,
            transformations=[
                transformation("merge", {}),
                transformation(
                    "organize",
                    {
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "Value #A": "GB-seconds (24h)",
                            "Value #B": "cost USD (24h)",
                            "Value #C": usd_day,
                        },
                    },
                ),
            ],
            overrides=[
                unit_override("cost USD (24h)", "currencyUSD"),
                unit_override(usd_day, "currencyUSD"),
            ],
            description="increase() over counters: safe across worker restarts.",
        ),
        timeseries(
            "Estimated cost per function, USD/day (at the current rate)",
            prom(f"{rate('faas_cost_usd_total')} * 86400", "{{function}}"),
            unit="currencyUSD",
            w=24,
        ),
        timeseries(
            "Custom counter $custom_counter (per second)",
            prom(f"sum by (function) (rate({_custom('counter')}[{RI}]))", "{{function}}"),
            repeat="custom_counter",
        ),
        timeseries(
            "Custom gauges",
            prom(
                'max by (__name__, function) ({__name__=~"faas_custom_.+", '
                '__name__!~"faas_custom_.+_(total|created|bucket|count|sum)", '
                'function=~"$function"})',
                "{{__name__}} {{function}}",
            ),
        ),
        timeseries(
            "Custom histogram $custom_histogram p95",
            prom(
                "histogram_quantile(0.95, sum by (le, function) "
                f"(rate({_custom('histogram')}[{RI}])))",
                "{{function}}",
            ),
            repeat="custom_histogram",
        ),
    )

"""Seed compatibility: the older project's panels, on the metric names its NodeJS library
sends as prometheus-aggregator lines.

The worker's line listener (``lines_listen``, see docs/migrating.md) exposes those
metrics under the names the functions send, so these queries are the ones the older
project's dashboard ran: nothing in them is faaslens-specific.
"""

from __future__ import annotations

from grafana.kit import Board, increase, prom, prom_var, rate, stat, textbox, timeseries

UID_SEED = "faaslens-seed-compat"
#: Azure Functions consumption plan, USD per GB-second: the default of the price textbox.
AZURE_GB_SECOND_USD = "0.000016"
#: Every per-function panel filters on the picked apps and functions.
SEL = 'function_app=~"$function_app", function_name=~"$function_name"'
#: Azure Monitor reports per function app.
APP = 'function_app=~"$function_app"'


def build() -> Board:
    board = Board(UID_SEED, "faaslens / Seed compatibility")
    board.variables(
        prom_var("function_app", "label_values(function_invocations_total, function_app)"),
        prom_var("function_name", "label_values(function_invocations_total, function_name)"),
        textbox("gb_second_usd", AZURE_GB_SECOND_USD, label="USD per GB-second"),
    )
    by = "function_name"
    started = increase("function_invocations_total", "$__range", by=by, selector=SEL)
    finished = increase("function_finished_total", "$__range", by=by, selector=SEL)
    monitor = increase(
        "azure_monitor_gigabyteseconds_total", "$__range", by="function_app", selector=APP
    )
    return board.add(
        timeseries(
            "Invocations per second",
            prom(rate("function_invocations_total", by=by, selector=SEL), "{{function_name}}"),
            unit="reqps",
        ),
        timeseries(
            "Mean execution time",
            prom(
                f"{rate('function_execution_time_total', by=by, selector=SEL)}"
                f" / {rate('function_finished_total', by=by, selector=SEL)}",
                "{{function_name}}",
            ),
            unit="ms",
            description="function_execution_time_total sums milliseconds per finished invocation",
        ),
        stat(
            # A function whose invocations all died has no finished series: 0 finished.
            "Started minus finished",
            prom(f"{started} - ({finished} or {started} * 0)", "{{function_name}}"),
            unit="short",
        ),
        stat(
            "GB-seconds (library estimate)",
            prom(
                increase("function_gigabyte_seconds_total", "$__range", by=by, selector=SEL),
                "{{function_name}}",
            ),
            unit="short",
        ),
        stat("GB-seconds (Azure Monitor)", prom(monitor, "{{function_app}}"), unit="short"),
        stat(
            "Cost (Azure Monitor GB-seconds x price)",
            # :raw: a number, not a regex (Grafana escapes the dots of a plain $var here).
            prom(f"{monitor} * ${{gb_second_usd:raw}}", "{{function_app}}"),
            unit="currencyUSD",
        ),
    )

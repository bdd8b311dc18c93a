"""Custom metrics carried with records, and settings from the environment."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from faaslens.shipper.config import (
    ConfigError,
    ShipperConfig,
    datagram_size,
    load_config,
    parse_endpoint,
)
from faaslens.shipper.metrics import MAX_LABEL_SETS, Counter, Gauge, Histogram
from tests.unit.shipper.kit import Receiver, make_shipper, receivers


@pytest.fixture
def rx() -> Iterator[Receiver]:
    yield from receivers()


def test_gauge_last_value_histogram_per_bucket(rx: Receiver) -> None:
    sh = make_shipper(rx)
    depth = Gauge("queue_depth", shipper=sh)
    size = Histogram("payload_bytes", unit="bytes", shipper=sh)
    with sh.invocation():
        depth.set(5, queue="a")
        depth.set(3, queue="a")
        size.observe(100)
        size.observe(250)
        size.observe(0.2)
    (inv,) = rx.events()
    assert inv["metrics"] == [
        {"name": "queue_depth", "kind": "gauge", "value": 3, "labels": {"queue": "a"}},
        # 100 and 250 share the +Inf bucket: one object for both, its value the largest.
        {"name": "payload_bytes", "kind": "histogram", "value": 250, "unit": "bytes",
         "count": 2, "sum": 350},
        {"name": "payload_bytes", "kind": "histogram", "value": 0.2, "unit": "bytes"},
    ]  # fmt: skip


def test_bad_values_and_labels_are_dropped_and_counted(rx: Receiver) -> None:
    sh = make_shipper(rx)
    c = Counter("c", shipper=sh)
    with sh.invocation():
        c.inc(-1)
        c.inc(math.nan)
        c.inc("x")  # type: ignore[arg-type]
        c.inc(1, **{"bad-label": "x", "ok": "y" * 100, "a": 1, "b": 2, "d": 3, "e": 4, "f": 5})
    (inv,) = rx.events()
    (metric,) = inv["metrics"]
    assert metric["labels"]["ok"].endswith("…[truncated]") and len(metric["labels"]["ok"]) == 64
    assert len(metric["labels"]) == 5
    assert sh.snapshot()["dropped_metrics"] == 3 + 2  # three bad values, two labels


def test_any_number_of_updates_is_aggregated_not_capped(rx: Receiver) -> None:
    sh = make_shipper(rx)
    h = Histogram("latency", shipper=sh)
    c = Counter("orders", shipper=sh)
    with sh.invocation():
        for i in range(100):
            h.observe(i / 100)
        c.inc(100)
    (inv,) = rx.events()
    hist = [m for m in inv["metrics"] if m["name"] == "latency"]
    assert sum(m.get("count", 1) for m in hist) == 100
    assert sum(m.get("sum", m["value"]) for m in hist) == pytest.approx(sum(range(100)) / 100)
    assert len(hist) <= 15  # one per bucket used
    assert [m for m in inv["metrics"] if m["name"] == "orders"] == [
        {"name": "orders", "kind": "counter", "value": 100}
    ]
    assert "faas.metrics_dropped" not in inv


def test_series_past_64_objects_are_dropped_and_sent_as_a_count(rx: Receiver) -> None:
    sh = make_shipper(rx, max_datagram=65_000)
    c = Counter("c", shipper=sh)
    with sh.invocation():
        for i in range(70):
            c.inc(shard=str(i))
        c.inc(-1)  # a bad value: dropped and counted with the same record
    (inv,) = rx.events()
    assert len(inv["metrics"]) == 64
    assert inv["faas.metrics_dropped"] == 7
    assert sh.snapshot()["dropped_metrics"] == 7


def test_label_sets_bounded_per_metric(rx: Receiver) -> None:
    sh = make_shipper(rx, max_datagram=65_000)
    c = Counter("requests", shipper=sh)
    for i in range(MAX_LABEL_SETS + 5):
        with sh.invocation():
            c.inc(user=f"u{i}")  # an id as a label: the mistake this guards against
    sent = [inv.get("metrics") for inv in rx.events()]
    assert sum(1 for m in sent if m) == MAX_LABEL_SETS
    assert sh.snapshot()["dropped_metrics"] == 5


def test_metrics_outside_an_invocation_ride_with_the_next(rx: Receiver) -> None:
    sh = make_shipper(rx)
    c = Counter("warmups", shipper=sh)
    c.inc()
    c.inc()
    assert rx.frames() == []
    with sh.invocation():
        c.inc()
    (inv,) = rx.events()
    assert inv["metrics"] == [{"name": "warmups", "kind": "counter", "value": 3}]


def test_bad_metric_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="metric name"):
        Counter("orders-total")
    with pytest.raises(ValueError):
        Counter("1st")


def test_config_from_environment() -> None:
    cfg = load_config(
        {
            "FAASLENS_ENDPOINT": "tcp://collector:9000",
            "FAASLENS_SERVICE": "api",
            "FAASLENS_ENVIRONMENT": "staging",
            "FAASLENS_LOG_SAMPLE_RATE": "0.25",
            "FAASLENS_HMAC_KEY": "k",
            "FAASLENS_HMAC_KEY_ID": "prod.1",
            "FAASLENS_MAX_DATAGRAM": "9000",
            "FAASLENS_REDACT_KEYS": "ssn,PIN",
            "FAASLENS_ECHO": "yes",
            "FAASLENS_DISABLED": "0",
            "FAASLENS_PRICE_PER_GB_S": "0.00001",
            "FAASLENS_PRICE_PRICE_ID": "corp-2026",
        }
    )
    assert parse_endpoint(cfg.endpoint) == ("tcp", "collector", 9000)
    assert (cfg.service, cfg.environment, cfg.log_sample_rate) == ("api", "staging", 0.25)
    assert (cfg.hmac_key, cfg.hmac_key_id, cfg.max_datagram) == ("k", "prod.1", 9000)
    assert cfg.redact_keys == ("ssn", "pin")
    assert cfg.echo is True and cfg.disabled is False
    assert cfg.prices == {"per_gb_s": 0.00001, "price_id": "corp-2026"}
    assert "***" in repr(cfg) and "'k'" not in repr(cfg)


def test_defaults_work_without_any_setting() -> None:
    cfg = load_config({})
    assert cfg.endpoint == "udp://127.0.0.1:8518"
    assert cfg.max_datagram is None and cfg.log_sample_rate == 1.0
    # the packing target follows the endpoint unless set
    assert datagram_size(cfg, "127.0.0.1") == 60_000
    assert datagram_size(cfg, "localhost") == 60_000
    assert datagram_size(cfg, "collector.internal") == 1400
    assert datagram_size(cfg.replace(max_datagram=9000), "127.0.0.1") == 9000


def test_bad_environment_values_are_reported_and_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = load_config(
        {
            "FAASLENS_ENDPOINT": "http://x:1",
            "FAASLENS_LOG_SAMPLE_RATE": "2",
            "FAASLENS_MAX_DATAGRAM": "ten",
            "FAASLENS_PRICE_PER_GB_S": "cheap",
        }
    )
    assert cfg.endpoint == "udp://127.0.0.1:8518"
    assert cfg.log_sample_rate == 1.0 and cfg.max_datagram is None
    err = capsys.readouterr().err
    assert "FAASLENS_ENDPOINT" in err and "FAASLENS_LOG_SAMPLE_RATE" in err
    assert "FAASLENS_MAX_DATAGRAM" in err and "FAASLENS_PRICE_PER_GB_S" in err


def test_variables_set_to_nothing_are_not_set_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    """A console that leaves FAASLENS_X= in a function's environment changes nothing and
    prints nothing; only FAASLENS_REDACT_KEYS=, where empty is a value, redacts no key."""
    blank = {f"FAASLENS_{key.upper()}": "" for key in ShipperConfig.__slots__}
    blank.update({"FAASLENS_PRICE_PER_GB_S": " ", "FAASLENS_DEBUG_BUFFER": "  "})
    cfg = load_config(blank)
    assert capsys.readouterr().err == ""
    defaults = ShipperConfig()
    for key in ShipperConfig.__slots__:
        expected = () if key == "redact_keys" else getattr(defaults, key)
        assert getattr(cfg, key) == expected, key


def test_a_bad_number_is_named_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    load_config({"FAASLENS_DEBUG_BUFFER": "lots", "FAASLENS_TCP_TIMEOUT_S": "soon"})
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "faaslens: ignoring bad setting: FAASLENS_DEBUG_BUFFER: not an integer: 'lots'",
        "faaslens: ignoring bad setting: FAASLENS_TCP_TIMEOUT_S: not a number: 'soon'",
    ]


def test_bad_code_settings_raise() -> None:
    with pytest.raises(ConfigError, match="unknown shipper setting"):
        ShipperConfig(endpont="udp://x:1")
    with pytest.raises(ConfigError, match="FAASLENS_LOG_LEVEL"):
        ShipperConfig(log_level="loud")


def test_disabled_leaves_the_handler_alone(rx: Receiver) -> None:
    sh = make_shipper(rx, disabled=True)

    def handler() -> int:
        return 5

    assert sh.instrument(handler) is handler
    assert handler() == 5 and rx.frames() == []

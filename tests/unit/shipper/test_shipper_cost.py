"""Price table: each provider's rounding, minimums and overrides."""

from __future__ import annotations

import pytest

from faaslens.shipper.cost import estimator_for

MIB = 1024 * 1024


def test_aws_rounds_up_to_1ms() -> None:
    est = estimator_for("aws", "x86_64", "eu-west-1")
    assert est is not None
    billed, gb_s, usd = est.estimate(1_200_001, 1024 * MIB, None)  # type: ignore[misc]
    assert billed == 2
    assert gb_s == pytest.approx(0.002)
    assert usd == pytest.approx(0.2e-6 + 0.002 * 0.0000166667)
    assert est.row.price_id == "aws-x86_64-2025-01"


def test_aws_arm_is_cheaper() -> None:
    x86 = estimator_for("aws", "x86_64", None)
    arm = estimator_for("aws", "arm64", None)
    assert x86 is not None and arm is not None
    assert arm.row.price_id == "aws-arm64-2025-01"
    assert arm.estimate(10**9, 512 * MIB, None)[2] < x86.estimate(10**9, 512 * MIB, None)[2]  # type: ignore[index]


def test_azure_minimums_and_memory_rounding() -> None:
    est = estimator_for("azure", "x86_64", "westeurope")
    assert est is not None
    # 3 ms and 70 MB observed -> 100 ms minimum, 128 MB minimum
    billed, gb_s, _ = est.estimate(3_000_000, None, 70 * MIB)  # type: ignore[misc]
    assert billed == 100
    assert gb_s == pytest.approx(0.125 * 0.1)
    # 250.2 ms and 130 MB -> 251 ms, 256 MB
    billed, gb_s, _ = est.estimate(250_200_000, None, 130 * MIB)  # type: ignore[misc]
    assert billed == 251
    assert gb_s == pytest.approx(0.25 * 0.251)
    # capped at 1,536 MB
    _, gb_s, _ = est.estimate(1_000_000_000, None, 4000 * MIB)  # type: ignore[misc]
    assert gb_s == pytest.approx(1.5)
    assert est.estimate(1, None, None) is None  # no memory reading, no price


def test_gcp_gen1_100ms_and_ghz() -> None:
    est = estimator_for("gcp", "x86_64", "us-central1", gcp_generation=1)
    assert est is not None
    assert est.row.price_id == "gcp-gen1-tier1-2025-01"
    billed, gb_s, usd = est.estimate(260_000_000, 256 * MIB, None)  # type: ignore[misc]
    assert billed == 300
    assert gb_s == pytest.approx(0.25 * 0.3)
    assert usd == pytest.approx(0.4e-6 + 0.075 * 0.0000025 + 0.4 * 0.3 * 0.0000100)
    tier2 = estimator_for("gcp", "x86_64", "southamerica-east1", gcp_generation=1)
    assert tier2 is not None and tier2.row.price_id == "gcp-gen1-tier2-2025-01"


def test_gcp_gen2_vcpu() -> None:
    est = estimator_for("gcp", "x86_64", "europe-west1", cpu=1.0)
    assert est is not None
    billed, _, usd = est.estimate(150_000_000, 512 * MIB, None)  # type: ignore[misc]
    assert billed == 200
    assert usd == pytest.approx(0.4e-6 + 0.5 * 0.2 * 0.0000025 + 1.0 * 0.2 * 0.000024)


def test_overrides_rename_the_row() -> None:
    est = estimator_for("aws", "x86_64", None, prices={"per_gb_s": 0.00001})
    assert est is not None
    assert est.row.price_id == "aws-x86_64-2025-01-custom"
    named = estimator_for("aws", "x86_64", None, prices={"per_request": 0, "price_id": "corp-2026"})
    assert named is not None and named.row.price_id == "corp-2026"
    assert estimator_for("local", "x86_64", None) is None
    custom = estimator_for("local", "x86_64", None, prices={"per_gb_s": 0.00002})
    assert custom is not None and custom.estimate(10**9, 1024 * MIB, None) == (1000, 1.0, 0.00002)

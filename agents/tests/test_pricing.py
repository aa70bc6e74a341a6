"""The dated price table and exact cost arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agents import pricing
from agents.pricing import Price, PriceVersion, UnknownModelPrice, cost_of, price_for


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def test_the_table_says_when_and_where_its_prices_were_read() -> None:
    assert pricing.PRICES_READ_ON == "2026-11-24"
    assert pricing.PRICES_SOURCE.startswith("https://")


@pytest.mark.parametrize(("model", "rates"), [
    ("claude-sonnet-4-5", ("3", "15", "3.75", "0.30")),
    ("claude-sonnet-4-5-20250929", ("3", "15", "3.75", "0.30")),
    ("claude-opus-4-5", ("5", "25", "6.25", "0.50")),
    ("claude-opus-4-1-20250805", ("15", "75", "18.75", "1.50")),
    ("claude-haiku-4-5", ("1", "5", "1.25", "0.10")),
    ("claude-3-haiku-20240307", ("0.25", "1.25", "0.30", "0.03")),
    ("claude-3-opus-latest", ("15", "75", "18.75", "1.50")),
])
def test_each_family_and_its_snapshot_ids_have_todays_price(model: str, rates: tuple) -> None:
    price = price_for(model, at=at("2026-11-24"))
    assert (price.input, price.output, price.cache_write, price.cache_read) == tuple(
        Decimal(r) for r in rates)


def test_a_price_change_applies_from_its_date_and_not_before() -> None:
    before = price_for("claude-3-5-haiku-20241022", at=at("2024-11-20"))
    after = price_for("claude-3-5-haiku-20241022", at=at("2025-01-10"))
    assert (before.input, before.output) == (Decimal("1"), Decimal("5"))
    assert (after.input, after.output) == (Decimal("0.80"), Decimal("4"))


def test_a_custom_table_picks_the_version_in_force_at_the_moment() -> None:
    table = {"m": (PriceVersion(at("2025-01-01"), "2", "4", "2.5", "0.2"),
                   PriceVersion(at("2025-06-01"), "1", "2", "1.25", "0.1"))}
    assert price_for("m", at=at("2025-05-31"), table=table).input == Decimal("2")
    assert price_for("m", at=at("2025-06-01"), table=table).input == Decimal("1")
    with pytest.raises(UnknownModelPrice, match="before 2025-01-01"):
        price_for("m", at=at("2024-12-31"), table=table)


def test_an_unknown_model_is_an_error_never_a_free_call() -> None:
    with pytest.raises(UnknownModelPrice, match="no price for the model 'claude-imaginary-9'"):
        price_for("claude-imaginary-9")


def test_cost_is_exact_to_the_micro_dollar() -> None:
    sonnet = price_for("claude-sonnet-4-5", at=at("2026-11-24"))
    # 1,234 in * $3 + 567 out * $15 = 3702 + 8505 = 12207 / 1e6.
    assert cost_of(sonnet, 1234, 567) == Decimal("0.012207")
    # Cache: 10,000 written * $3.75 + 50,000 read * $0.30 = 37500 + 15000.
    assert cost_of(sonnet, 0, 0, 10_000, 50_000) == Decimal("0.052500")
    assert cost_of(sonnet, 1_000_000, 1_000_000) == Decimal("18.000000")
    haiku3 = price_for("claude-3-haiku", at=at("2026-11-24"))
    # 3 * 0.25 = 0.75 micro-dollars rounds half-up to 1.
    assert cost_of(haiku3, 3, 0) == Decimal("0.000001")
    assert cost_of(haiku3, 1, 0) == Decimal("0.000000")


def test_costs_are_decimals_with_six_places() -> None:
    cost = cost_of(Price(Decimal(1), Decimal(1), Decimal(1), Decimal(1)), 7, 0)
    assert isinstance(cost, Decimal) and cost.as_tuple().exponent == -6


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_impossible_token_counts_are_refused(bad: object) -> None:
    with pytest.raises(Exception, match="whole numbers"):
        cost_of(price_for("claude-sonnet-4-5"), bad, 0)  # type: ignore[arg-type]


def test_operator_rates_derive_cache_rates_by_anthropics_multipliers() -> None:
    price = Price.from_input_output(Decimal("2"), Decimal("8"), source="endpoint")
    assert (price.cache_write, price.cache_read) == (Decimal("2.50"), Decimal("0.2"))
    assert price.snapshot()["source"] == "endpoint"

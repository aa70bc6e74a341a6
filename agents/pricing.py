"""The dated price table of Claude models and exact cost arithmetic (USD, Decimal, micro-dollars).

Prices are USD per million tokens. Each model keeps every price it ever had, each with the
date it took effect, so a call is costed at the price in force when it was made and old
ledger rows never change when the table does.

Source: https://platform.claude.com/docs/en/about-claude/pricing ("Model pricing": base input,
5-minute cache writes, cache hits, output), read on 2026-11-24. The Claude 3.5 Haiku launch
price is from the model's announcement (https://www.anthropic.com/news/3-5-models-and-computer-use).
To update: add a new `PriceVersion` with its `effective_from` below the older one; never edit
a version that ledger rows may already have used. Long-context (>200K input tokens) surcharges,
1-hour cache writes and batch discounts are not modelled: HAAO makes neither kind of call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from haao.errors import ApplicationError

PRICES_READ_ON = "2026-11-24"
PRICES_SOURCE = "https://platform.claude.com/docs/en/about-claude/pricing"

MICRO = Decimal("0.000001")
MILLION = Decimal(1_000_000)
# Anthropic's published multipliers of the base input price (used for operator overrides).
CACHE_WRITE_MULTIPLIER = Decimal("1.25")
CACHE_READ_MULTIPLIER = Decimal("0.1")


class UnknownModelPrice(ApplicationError):
    """The price table has no price for this model at that moment."""

    code = "unknown_model_price"


def _plain(rate: Decimal) -> str:
    """A rate as short exact text: 3, 0.3, 2.5."""
    return format(rate.quantize(MICRO).normalize(), "f")


@dataclass(frozen=True)
class Price:
    """Rates in USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal
    source: str = "table"
    effective_from: str = ""

    def snapshot(self) -> dict[str, Any]:
        """The rates as JSON-safe strings, as stored beside each costed call."""
        return {"currency": "USD", "unit": "per_million_tokens",
                "input": _plain(self.input), "output": _plain(self.output),
                "cache_write": _plain(self.cache_write), "cache_read": _plain(self.cache_read),
                "source": self.source, "effective_from": self.effective_from}

    @classmethod
    def from_input_output(cls, input: Decimal, output: Decimal, *, source: str) -> Price:
        """Operator-set rates; cache rates follow Anthropic's multipliers of the input rate."""
        return cls(input=input, output=output, cache_write=input * CACHE_WRITE_MULTIPLIER,
                   cache_read=input * CACHE_READ_MULTIPLIER, source=source)


@dataclass(frozen=True)
class PriceVersion:
    effective_from: datetime
    input: str
    output: str
    cache_write: str
    cache_read: str

    def price(self) -> Price:
        return Price(Decimal(self.input), Decimal(self.output), Decimal(self.cache_write),
                     Decimal(self.cache_read), source="table",
                     effective_from=self.effective_from.date().isoformat())


def _d(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


# (input, output, 5-minute cache write, cache read), USD per million tokens. `effective_from` is
# the model's release, or for models whose release day we did not verify, the day their price
# tier began (harmless: no call can predate its model).
_OPUS_4 = ("15", "75", "18.75", "1.50")
_OPUS_45 = ("5", "25", "6.25", "0.50")
_SONNET = ("3", "15", "3.75", "0.30")

PRICE_TABLE: dict[str, tuple[PriceVersion, ...]] = {
    # Opus
    "claude-opus-4-8": (PriceVersion(_d("2025-11-24"), *_OPUS_45),),
    "claude-opus-4-7": (PriceVersion(_d("2025-11-24"), *_OPUS_45),),
    "claude-opus-4-6": (PriceVersion(_d("2025-11-24"), *_OPUS_45),),
    "claude-opus-4-5": (PriceVersion(_d("2025-11-24"), *_OPUS_45),),
    "claude-opus-4-1": (PriceVersion(_d("2025-08-05"), *_OPUS_4),),
    "claude-opus-4-0": (PriceVersion(_d("2025-05-22"), *_OPUS_4),),
    "claude-3-opus": (PriceVersion(_d("2024-03-04"), *_OPUS_4),),
    # Sonnet
    "claude-sonnet-4-6": (PriceVersion(_d("2025-09-29"), *_SONNET),),
    "claude-sonnet-4-5": (PriceVersion(_d("2025-09-29"), *_SONNET),),
    "claude-sonnet-4-0": (PriceVersion(_d("2025-05-22"), *_SONNET),),
    "claude-3-7-sonnet": (PriceVersion(_d("2025-02-24"), *_SONNET),),
    "claude-3-5-sonnet": (PriceVersion(_d("2024-06-20"), *_SONNET),),
    # Haiku
    "claude-haiku-4-5": (PriceVersion(_d("2025-10-15"), "1", "5", "1.25", "0.10"),),
    "claude-3-5-haiku": (
        PriceVersion(_d("2024-11-04"), "1", "5", "1.25", "0.10"),
        PriceVersion(_d("2024-12-03"), "0.80", "4", "1", "0.08"),
    ),
    "claude-3-haiku": (PriceVersion(_d("2024-03-13"), "0.25", "1.25", "0.30", "0.03"),),
}
# Other names of the same models (the API's aliases); a dated snapshot id such as
# claude-sonnet-4-5-20250929 or a `-latest` alias is reduced to its family id first.
ALIASES = {
    "claude-opus-4": "claude-opus-4-0",
    "claude-sonnet-4": "claude-sonnet-4-0",
    "claude-3-opus-latest": "claude-3-opus",
}
CURRENT_SONNET = "claude-sonnet-4-6"

_SNAPSHOT = re.compile(r"^(?P<family>.+?)(?:-(?:\d{8}|latest))$")


def canonical_model(model: str) -> str:
    """The table's id for `model` (a snapshot or alias); unknown names come back unchanged."""
    name = model.strip().lower()
    if name in PRICE_TABLE:
        return name
    if name in ALIASES:
        return ALIASES[name]
    match = _SNAPSHOT.match(name)
    if match:
        family = match["family"]
        family = ALIASES.get(family, family)
        if family in PRICE_TABLE:
            return family
    return name


def is_known_model(model: str) -> bool:
    return canonical_model(model) in PRICE_TABLE


def price_for(model: str, *, at: datetime | None = None,
              table: dict[str, tuple[PriceVersion, ...]] | None = None) -> Price:
    """The price of `model` in force at `at` (default: now); unknown → UnknownModelPrice."""
    table = PRICE_TABLE if table is None else table
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("price_for() needs an aware datetime.")
    versions = table.get(canonical_model(model)) or table.get(model)
    shown = model if len(model) <= 80 else f"{model[:80]}…"
    if not versions:
        raise UnknownModelPrice(
            f"The price table has no price for the model '{shown}'; set the endpoint's prices "
            "by hand or use a model from the table.", details={"model": ["no price"]})
    in_force = [v for v in versions if v.effective_from <= when]
    if not in_force:
        raise UnknownModelPrice(
            f"The price table has no price for '{shown}' before "
            f"{versions[0].effective_from.date().isoformat()}.", details={"model": ["no price"]})
    return max(in_force, key=lambda v: v.effective_from).price()


def cost_of(price: Price, input_tokens: int, output_tokens: int,
            cache_write_tokens: int = 0, cache_read_tokens: int = 0) -> Decimal:
    """The exact cost in USD, rounded half-up once to whole micro-dollars."""
    counts = (input_tokens, output_tokens, cache_write_tokens, cache_read_tokens)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
        raise ApplicationError("Token counts must be whole numbers of at least 0.",
                               details={"tokens": ["invalid"]})
    total = (price.input * input_tokens + price.output * output_tokens
             + price.cache_write * cache_write_tokens + price.cache_read * cache_read_tokens)
    return (total / MILLION).quantize(MICRO, rounding=ROUND_HALF_UP)


def known_models() -> list[str]:
    """Model ids of the table, for forms and the API's documentation."""
    return sorted(PRICE_TABLE)

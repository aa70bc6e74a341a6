"""Discounts a sales rep can grant on a whole invoice."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Discount:
    percent: Decimal = Decimal("0")
    fixed: Decimal = Decimal("0")

    def __post_init__(self) -> None:
        if not Decimal("0") <= self.percent <= Decimal("100"):
            raise ValueError("percent must be between 0 and 100")
        if self.fixed < 0:
            raise ValueError("a fixed discount must not be negative")


def apply_discount(amount: Decimal, discount: Discount) -> Decimal:
    """The amount after the percentage, then the fixed discount; never below zero."""
    reduced = amount - amount * discount.percent / Decimal("100") - discount.fixed
    return max(reduced, Decimal("0"))

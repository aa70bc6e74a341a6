"""Sales tax by product category."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

TAX_RATES: dict[str, Decimal] = {
    "standard": Decimal("0.20"),
    "reduced": Decimal("0.05"),
    "exempt": Decimal("0"),
}

CENT = Decimal("0.01")


def tax_for(amount: Decimal, category: str = "standard") -> Decimal:
    """Tax owed on an amount, rounded half-up to the cent as the tax office requires."""
    try:
        rate = TAX_RATES[category]
    except KeyError:
        raise ValueError(f"unknown tax category: {category!r}") from None
    return (amount * rate).quantize(CENT, rounding=ROUND_HALF_UP)

"""One line of an invoice: what was sold, how many, at what unit price."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class LineItem:
    description: str
    quantity: int
    unit_price: Decimal
    category: str = "standard"

    def __post_init__(self) -> None:
        if not self.description.strip():
            raise ValueError("a line item needs a description")
        if self.quantity <= 0:
            raise ValueError("quantity must be at least 1")
        if not isinstance(self.unit_price, Decimal):
            raise TypeError("unit_price must be a Decimal, not a float")
        if self.unit_price < 0:
            raise ValueError("unit_price must not be negative")

    @property
    def subtotal(self) -> Decimal:
        """Unit price times quantity, unrounded."""
        return self.unit_price * self.quantity

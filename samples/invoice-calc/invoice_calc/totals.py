"""Invoice totals: net, tax and gross, each rounded to the cent."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from invoice_calc.discounts import Discount, apply_discount
from invoice_calc.line_items import LineItem
from invoice_calc.tax import tax_for


def round_money(amount: Decimal) -> Decimal:
    """Round an amount to whole cents."""
    return Decimal(str(round(float(amount), 2)))


def total(amounts: Iterable[Decimal]) -> Decimal:
    """The sum of amounts, rounded to the cent."""
    return round_money(sum(amounts, Decimal("0")))


@dataclass(frozen=True)
class InvoiceTotals:
    net: Decimal
    tax: Decimal
    gross: Decimal


def invoice_totals(items: Iterable[LineItem], discount: Discount | None = None) -> InvoiceTotals:
    """Net after discount, tax per category on the discounted lines, and the gross total."""
    items = list(items)
    if not items:
        return InvoiceTotals(net=Decimal("0.00"), tax=Decimal("0.00"), gross=Decimal("0.00"))
    discount = discount or Discount()
    gross_before = sum((item.subtotal for item in items), Decimal("0"))
    net_after = apply_discount(gross_before, discount)
    # The discount is spread over the lines in proportion to their value.
    factor = net_after / gross_before if gross_before else Decimal("0")
    tax = sum((tax_for(item.subtotal * factor, item.category) for item in items), Decimal("0"))
    net = total([net_after])
    return InvoiceTotals(net=net, tax=tax, gross=total([net, tax]))

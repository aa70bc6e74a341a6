"""Invoice arithmetic: line items, discounts, tax and totals, all in Decimal."""

from invoice_calc.discounts import Discount, apply_discount
from invoice_calc.line_items import LineItem
from invoice_calc.tax import TAX_RATES, tax_for
from invoice_calc.totals import InvoiceTotals, invoice_totals, round_money, total

__all__ = [
    "TAX_RATES",
    "Discount",
    "InvoiceTotals",
    "LineItem",
    "apply_discount",
    "invoice_totals",
    "round_money",
    "tax_for",
    "total",
]

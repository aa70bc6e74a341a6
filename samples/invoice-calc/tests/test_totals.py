from decimal import Decimal

from invoice_calc import Discount, LineItem, invoice_totals, total


def test_total_of_whole_cents_is_exact():
    assert total([Decimal("19.99"), Decimal("0.01")]) == Decimal("20.00")


def test_total_rounds_half_a_cent_up():
    # Issue #42: 0.125 must become 0.13, as on the customer's paper invoices.
    assert total([Decimal("0.125")]) == Decimal("0.13")


def test_invoice_totals_add_tax_per_category():
    items = [
        LineItem("Book", 2, Decimal("10.00"), "reduced"),
        LineItem("Lamp", 1, Decimal("30.00")),
    ]

    totals = invoice_totals(items)

    assert totals.net == Decimal("50.00")
    assert totals.tax == Decimal("7.00")
    assert totals.gross == Decimal("57.00")


def test_invoice_totals_spread_the_discount_over_the_lines():
    items = [LineItem("Lamp", 2, Decimal("50.00"))]

    totals = invoice_totals(items, Discount(percent=Decimal("10")))

    assert totals.net == Decimal("90.00")
    assert totals.tax == Decimal("18.00")
    assert totals.gross == Decimal("108.00")


def test_an_empty_invoice_totals_zero():
    assert invoice_totals([]).gross == Decimal("0.00")

from decimal import Decimal

import pytest

from invoice_calc import LineItem


def test_subtotal_is_unit_price_times_quantity():
    item = LineItem("Widget", 3, Decimal("2.50"))

    assert item.subtotal == Decimal("7.50")


def test_a_float_price_is_refused():
    with pytest.raises(TypeError, match="Decimal"):
        LineItem("Widget", 1, 2.5)


def test_zero_quantity_is_refused():
    with pytest.raises(ValueError, match="quantity"):
        LineItem("Widget", 0, Decimal("1"))


def test_a_blank_description_is_refused():
    with pytest.raises(ValueError, match="description"):
        LineItem("  ", 1, Decimal("1"))

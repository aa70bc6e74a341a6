from decimal import Decimal

import pytest

from invoice_calc import tax_for


def test_standard_rate_is_twenty_percent():
    assert tax_for(Decimal("10.00")) == Decimal("2.00")


def test_reduced_rate_is_five_percent():
    assert tax_for(Decimal("10.00"), "reduced") == Decimal("0.50")


def test_tax_rounds_half_up_to_the_cent():
    # 0.05 * 0.50 = 0.025 -> 0.03
    assert tax_for(Decimal("0.50"), "reduced") == Decimal("0.03")


def test_exempt_items_pay_no_tax():
    assert tax_for(Decimal("99.99"), "exempt") == Decimal("0.00")


def test_an_unknown_category_is_refused():
    with pytest.raises(ValueError, match="luxury"):
        tax_for(Decimal("1"), "luxury")

from decimal import Decimal

import pytest

from invoice_calc import Discount, apply_discount


def test_percentage_then_fixed_discount():
    discount = Discount(percent=Decimal("10"), fixed=Decimal("5"))

    assert apply_discount(Decimal("100"), discount) == Decimal("85")


def test_a_discount_never_makes_the_amount_negative():
    assert apply_discount(Decimal("3"), Discount(fixed=Decimal("10"))) == Decimal("0")


def test_a_percentage_above_one_hundred_is_refused():
    with pytest.raises(ValueError, match="percent"):
        Discount(percent=Decimal("150"))

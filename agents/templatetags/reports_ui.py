"""Template filters of the cost report: money as people read it, and exactly on hover."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agents.reports.selectors import usd

register = template.Library()


def _short(value: Decimal) -> str:
    places = Decimal("0.01") if abs(value) >= 1 else Decimal("0.0001")
    return f"{value.quantize(places, rounding=ROUND_HALF_UP):,}"


@register.filter
def money(value: Decimal | None) -> SafeString | str:
    """`$12.34` (or `$0.0412` under a dollar) with the exact amount as its title; — for none."""
    if value is None:
        return "—"
    sign = "\u2212" if value < 0 else ""
    return format_html('<span title="{} USD" class="tabular-nums">{}${}</span>', usd(value),
                       sign, _short(abs(value)))


@register.filter
def percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value}%"


@register.filter
def tokens(value: int) -> str:
    return f"{value:,}"

"""Template filters of the cost report: money as every page shows it, exactly on hover."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agents.reports.selectors import usd
from tickets.templatetags.tickets_ui import money as cost_text

register = template.Library()


@register.filter
def money(value: Decimal | None) -> SafeString | str:
    """The amount as every page shows a cost (tickets_ui's `money`: "0.001289 USD"), so a
    ticket's figure in the report reads the same as on its page and board; — for none."""
    if value is None:
        return "—"
    return format_html('<span title="{} USD" class="tabular-nums">{}</span>', usd(value),
                       cost_text(value))


@register.filter
def percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value}%"


@register.filter
def tokens(value: int) -> str:
    return f"{value:,}"

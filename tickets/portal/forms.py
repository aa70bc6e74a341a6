"""Forms of the project page: a new requirement."""

from __future__ import annotations

from django import forms

from haao.limits import LimitedCharField
from tickets.services.requirements import MAX_TEXT, MAX_TITLE


class RequirementForm(forms.Form):
    """A requirement in plain language; the service checks it again and stores it."""

    title = LimitedCharField(label="Title", max_length=MAX_TITLE,
                             help_text="One line, e.g. “Invoices round to cents”.")
    text = LimitedCharField(
        label="What you need", max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Plain language. The Tech Lead breaks it into proposed tickets for you to "
                  "review at Gate 1; nothing runs before you approve.")

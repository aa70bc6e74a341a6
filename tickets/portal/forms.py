"""Forms of the project page: a new requirement."""

from __future__ import annotations

from django import forms

from tickets.services.requirements import MAX_TEXT


class RequirementForm(forms.Form):
    """A requirement in plain language; the service checks it again and stores it."""

    title = forms.CharField(max_length=200, help_text="One line, e.g. “Invoices round to cents”.")
    text = forms.CharField(
        label="What you need", max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Plain language. The Tech Lead breaks it into proposed tickets for you to "
                  "review at Gate 1; nothing runs before you approve.")

"""The "Sign in with SSO" form: an email address or an organization's slug."""

from __future__ import annotations

from django import forms

from accounts.models import SSOConnection
from accounts.sso.selectors import sso_connection_for

NOT_SET_UP = ("No single sign-on is set up for that. Check the address or organization, "
              "or sign in with your password.")


class SSOStartForm(forms.Form):
    identifier = forms.CharField(
        label="Work email or organization", max_length=254,
        help_text="For example you@company.com, or your organization's short name.",
        widget=forms.TextInput(attrs={"autocomplete": "email", "autofocus": True,
                                      "autocapitalize": "none", "spellcheck": "false"}),
    )

    connection: SSOConnection

    def clean_identifier(self) -> str:
        value: str = self.cleaned_data["identifier"].strip()
        if "@" in value:
            local, _, domain = value.rpartition("@")
            if not local or "." not in domain:
                raise forms.ValidationError("Enter a full email address, like you@company.com.")
        connection = sso_connection_for(identifier=value)
        if connection is None:
            # The same message for every miss: the page must not reveal which organizations exist.
            raise forms.ValidationError(NOT_SET_UP)
        self.connection = connection
        return value

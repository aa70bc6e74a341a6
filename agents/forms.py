"""The admin console's endpoint form; the API key is write-only and never rendered."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from agents import pricing
from agents.models import (
    ANTHROPIC_BASE_URL,
    MAX_CONCURRENCY,
    EndpointFlavor,
    EndpointKind,
    EndpointRole,
    InferenceEndpoint,
)
from agents.services import EDITABLE, MAX_API_KEY, MAX_PRICE


def _price_field(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label, required=False, min_value=Decimal(0), max_value=MAX_PRICE, max_digits=12,
        decimal_places=6,
        help_text="USD per million tokens. Anthropic: leave empty to follow the price table. "
                  "Local: what the operator says it costs (0 by default).",
        widget=forms.NumberInput(attrs={"step": "any", "min": "0", "inputmode": "decimal"}))


class EndpointForm(forms.Form):
    """Create or edit an inference endpoint."""

    name = forms.CharField(max_length=100, help_text="Unique in the organization, e.g. "
                                                    "“GPU box coder”.")
    kind = forms.ChoiceField(choices=EndpointKind.choices, initial=EndpointKind.OPENAI_COMPATIBLE)
    flavor = forms.ChoiceField(choices=[("", "—"), *EndpointFlavor.choices], required=False,
                               label="Server", help_text="Which local server it is (a hint).")
    base_url = forms.CharField(
        max_length=2048, required=False, label="Base URL",
        help_text=f"Anthropic: leave empty for {ANTHROPIC_BASE_URL}. Local, e.g. "
                  "http://gpu-box:1234/v1. Private and loopback addresses (localhost) work "
                  "only if the platform operator allows them in HAAO_ENDPOINT_ALLOWLIST.",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off",
                                      "class": "font-mono"}))
    model = forms.CharField(max_length=200, label="Model id",
                            help_text=f"e.g. {pricing.CURRENT_SONNET} or the id your local "
                                      "server lists.")
    api_key = forms.CharField(
        max_length=MAX_API_KEY, required=False, label="API key", strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: it is stored encrypted and never shown. Leave empty to keep the "
                  "stored key.")
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    role = forms.ChoiceField(choices=EndpointRole.choices, initial=EndpointRole.CODER)
    max_concurrency = forms.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, initial=1,
                                         label="Concurrent requests",
                                         help_text=f"1 to {MAX_CONCURRENCY}.")
    price_input = _price_field("Input price")
    price_output = _price_field("Output price")
    dedicated_queue = forms.CharField(
        max_length=63, required=False, label="Dedicated queue",
        help_text="Optional: a queue only your own worker consumes, e.g. acme-gpu-1.")
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled",
                                 help_text="Work is routed to it.")
    self_hosted = forms.BooleanField(
        required=False, initial=True,
        label="Self-hosted: runs on our machines (allowed under data residency)",
        help_text="Leave it on for a local server; off for a cloud API such as Anthropic's.")

    def __init__(self, *args: Any, endpoint: InferenceEndpoint | None = None,
                 **kwargs: Any) -> None:
        self.endpoint = endpoint
        self.table_price: pricing.Price | None = None
        if endpoint is not None and "initial" not in kwargs:
            initial = {field: getattr(endpoint, field) for field in EDITABLE}
            if endpoint.kind == EndpointKind.ANTHROPIC:
                if endpoint.base_url == ANTHROPIC_BASE_URL:
                    initial["base_url"] = ""
                if pricing.is_known_model(endpoint.model):
                    # Prefilled with the table's price; saved unchanged, it keeps following it.
                    self.table_price = pricing.price_for(endpoint.model)
                    if endpoint.price_input is None:
                        initial["price_input"] = self.table_price.input
                    if endpoint.price_output is None:
                        initial["price_output"] = self.table_price.output
            kwargs["initial"] = initial
        super().__init__(*args, **kwargs)
        self.has_stored_key = bool(endpoint and endpoint.has_api_key)
        if endpoint is None:
            del self.fields["clear_api_key"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == EndpointKind.ANTHROPIC and pricing.is_known_model(
                str(data.get("model") or "")):
            table = pricing.price_for(str(data["model"]))
            # The table's own price, submitted unchanged, means "follow the table".
            if data.get("price_input") == table.input:
                data["price_input"] = None
            if data.get("price_output") == table.output:
                data["price_output"] = None
        return data

    def values(self) -> dict[str, Any]:
        """The editable fields for agents.services."""
        return {field: self.cleaned_data.get(field) for field in EDITABLE}

"""Forms of the two gates: a spec as JSON text (Gate 1) and the decisions of Gate 2."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from haao.limits import LimitedCharField
from tickets.services.tickets import MAX_CANCEL_REASON, MAX_FEEDBACK
from tickets.spec import MAX_SPEC_BYTES


class SpecForm(forms.Form):
    """An Atomic Ticket typed as JSON; the form checks the syntax, the services the schema."""

    spec = forms.CharField(
        label="Spec (JSON)", strip=False, max_length=MAX_SPEC_BYTES,
        widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false",
                                     "autocapitalize": "off"}),
        error_messages={"required": "Enter the ticket's spec as a JSON object."})

    def clean_spec(self) -> dict[str, Any]:
        text = self.cleaned_data["spec"]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(
                f"This is not valid JSON: {error.msg} at line {error.lineno}, "
                f"column {error.colno}.", code="json") from None
        except RecursionError:
            raise forms.ValidationError("This JSON is nested too deeply.", code="json") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The spec must be a JSON object ({ … }).",
                                        code="object")
        return value


class MoveForm(forms.Form):
    direction = forms.ChoiceField(choices=[("up", "Up"), ("down", "Down")])


class RejectForm(forms.Form):
    feedback = LimitedCharField(
        label="Feedback", max_length=MAX_FEEDBACK,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What is wrong; the next attempt receives it word for word.",
        error_messages={"required": "Say what is wrong: feedback is required to reject."})

    def clean_feedback(self) -> str:
        feedback: str = self.cleaned_data["feedback"]
        if "\x00" in feedback:
            raise forms.ValidationError("Feedback must be plain text (no NUL bytes).")
        return feedback


class CancelForm(forms.Form):
    reason = LimitedCharField(label="Reason", max_length=MAX_CANCEL_REASON, required=False,
                             help_text="Why, for the event log.")

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"]
        if "\x00" in reason:
            raise forms.ValidationError("The reason must be plain text (no NUL bytes).")
        return reason

"""Length limits on text people submit: over-long input is refused with the limit named,
never cut silently (text HAAO writes itself may be shortened for display and logs)."""

from __future__ import annotations

from typing import Any

from django import forms

from haao.errors import ApplicationError


def too_long(label: str, limit: int | str, got: int | str) -> str:
    """The one wording of an over-limit refusal, for services, forms and the API."""
    return f"{label} is at most {limit} characters (got {got})."


def check_length(value: str, *, field: str, label: str, limit: int) -> None:
    """Raise ApplicationError naming `label`'s limit when `value` is longer."""
    if len(value) > limit:
        message = too_long(label, limit, len(value))
        raise ApplicationError(message, details={field: [message]})


class LimitedCharField(forms.CharField):
    """A form field that refuses over-long text with its limit named. The browser is not
    given `maxlength`, which would cut a pasted text without a word."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        label = str(self.label or "The text")
        self.error_messages["max_length"] = too_long(label, "%(limit_value)d",
                                                     "%(show_value)d")

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        attrs.pop("maxlength", None)
        return attrs

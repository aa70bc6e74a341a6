"""The admin console's policy forms: one field per rule, and the "try it" box.

The fields only turn what a browser sends into the types policies.rules expects; the rules'
own checks (ranges, globs, programs) run once, in `rules_clean`, so the console and the
API refuse the same values with the same messages.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django import forms

from policies import rules
from policies.rules import Rule

MAX_PATH = 1000
MAX_COMMAND = 2000
MAX_PAYLOAD = 100_000


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _field(rule: Rule) -> forms.Field:
    # Money rules name USD in their help already.
    help_text = rule.help + (f" ({rule.unit})" if rule.unit and rule.kind != "money" else "")
    common: dict[str, Any] = {"label": rule.label, "help_text": help_text}
    if rule.kind == "bool":
        return forms.BooleanField(required=False, **common)
    if rule.kind == "int":
        # No min/max validators here: rules_clean names the range, as the API does.
        return forms.IntegerField(required=True, widget=forms.NumberInput(
            attrs={"min": rule.minimum, "max": rule.maximum, "step": 1}), **common)
    if rule.kind == "money":
        hint = " Leave empty for no limit." if rule.nullable else ""
        return forms.CharField(
            required=not rule.nullable, max_length=40, strip=True,
            label=rule.label, help_text=help_text + hint,
            widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off",
                                          "placeholder": "no limit" if rule.nullable else ""}))
    if rule.kind in ("paths", "programs"):
        what = "pattern" if rule.kind == "paths" else "program"
        return forms.CharField(
            required=False, max_length=rules.PATTERNS_MAX * (rules.PATTERN_LENGTH_MAX + 2),
            label=rule.label, help_text=f"One {what} per line. {help_text}",
            widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false",
                                         "class": "font-mono text-sm"}))
    if rule.kind == "choice":
        return forms.ChoiceField(choices=rule.choices, **common)
    return forms.CharField(required=False, max_length=1000, widget=forms.Textarea(
        attrs={"rows": 2}), **common)


def form_value(rule: Rule, value: Any) -> Any:
    """A rule's value as the form shows it."""
    if rule.kind in ("paths", "programs"):
        return "\n".join(value or [])
    if rule.kind == "money":
        return "" if value is None else str(value)
    return value


class PolicyForm(forms.Form):
    """Every rule of a policy; `changes()` gives only what the admin changed.

    `shown` is what each field starts from: the effective value on the organization's page;
    on a project's page the same, except for lists a project adds to (its own additions).
    """

    def __init__(self, data: Mapping[str, Any] | None = None, *, shown: Mapping[str, Any]
                 ) -> None:
        self.shown = dict(shown)
        super().__init__(data, initial={rule.name: form_value(rule, shown.get(rule.name))
                                        for rule in rules.RULES})
        for rule in rules.RULES:
            self.fields[rule.name] = _field(rule)

    def value_of(self, rule: Rule) -> Any:
        """The submitted value in the type rules_clean expects."""
        raw = self.cleaned_data.get(rule.name)
        if rule.kind in ("paths", "programs"):
            return _lines(raw or "")
        if rule.kind == "money":
            return raw or None
        if rule.kind == "text":
            return (raw or "").strip()
        return raw

    def changes(self) -> dict[str, Any]:
        """The rules whose submitted value differs from the value the page showed."""
        changed: dict[str, Any] = {}
        for rule in rules.RULES:
            value = self.value_of(rule)
            before = self.shown.get(rule.name)
            if rule.kind == "money" and value is not None and before is not None:
                try:
                    if Decimal(value) == before:
                        continue
                except ArithmeticError:
                    pass  # not an amount: rules_clean says so on the field
            elif rule.kind in ("paths", "programs"):
                if value == list(before or []):
                    continue
            elif value == before:
                continue
            changed[rule.name] = value
        return changed

    def groups(self) -> list[tuple[str, list[tuple[Rule, forms.BoundField]]]]:
        """The fields by the rule's group, in the catalogue's order."""
        grouped: dict[str, list[tuple[Rule, forms.BoundField]]] = {}
        for rule in rules.RULES:
            grouped.setdefault(rule.group, []).append((rule, self[rule.name]))
        return list(grouped.items())


class TryForm(forms.Form):
    """A path, a command and a payload to put before the policy."""

    path = forms.CharField(required=False, max_length=MAX_PATH, label="Path",
                           help_text="A file in the repository, e.g. .github/workflows/ci.yml.",
                           widget=forms.TextInput(attrs={"class": "font-mono",
                                                         "spellcheck": "false"}))
    command = forms.CharField(required=False, max_length=MAX_COMMAND, label="Command",
                              help_text="A Definition-of-Done check as you would type it in a "
                                        "shell, e.g. pytest -q tests/.",
                              widget=forms.TextInput(attrs={"class": "font-mono",
                                                            "spellcheck": "false"}))
    payload = forms.CharField(required=False, max_length=MAX_PAYLOAD, strip=False,
                              label="Text bound for a cloud model",
                              help_text="Shown as it would be sent, with secrets redacted. "
                                        "Nothing is sent or stored.",
                              widget=forms.Textarea(attrs={"rows": 4, "class": "font-mono",
                                                           "spellcheck": "false"}))

    def clean_command(self) -> list[str]:
        line = self.cleaned_data.get("command") or ""
        try:
            return shlex.split(line)
        except ValueError as error:
            raise forms.ValidationError(f"Could not split the command: {error}.") from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors and not (data.get("path", "").strip() or data.get("command")
                                    or data.get("payload")):
            raise forms.ValidationError("Give a path, a command or a text to try.")
        return data

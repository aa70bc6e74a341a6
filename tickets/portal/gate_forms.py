"""Forms of the two gates: a spec as fields or as JSON text (Gate 1) and the decisions of
Gate 2."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from django import forms

from haao.limits import LimitedCharField
from tickets.services.tickets import MAX_CANCEL_REASON, MAX_FEEDBACK
from tickets.spec import MAX_SPEC_BYTES, SpecError


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


# A check added through the fields without a timeout gets this one (the schema needs one).
DEFAULT_TIMEOUT = 120


def _lines(text: str) -> list[str]:
    """Non-empty lines of a one-item-per-line text area, trimmed."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _textarea(rows: int) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows})


class TicketFieldsForm(forms.Form):
    """The parts of a proposed ticket a product owner edits most, as plain fields."""

    title = forms.CharField(label="Title", strip=True,
                            error_messages={"required": "Enter a title."})
    objective = forms.CharField(label="Objective", widget=_textarea(4),
                                error_messages={"required": "Say what the change must achieve."})
    constraints = forms.CharField(label="Constraints", required=False, widget=_textarea(3),
                                  help_text="One rule per line.")
    allowed_paths = forms.CharField(
        label="Files it may change", widget=_textarea(3),
        help_text="One relative path per line; * and ? match any characters.",
        error_messages={"required": "Name at least one file the ticket may change."})

    @classmethod
    def initial_from(cls, spec: dict[str, Any]) -> dict[str, Any]:
        return {"title": spec.get("title", ""), "objective": spec.get("objective", ""),
                "constraints": "\n".join(spec.get("constraints") or []),
                "allowed_paths": "\n".join(spec.get("allowed_paths") or [])}


class CheckForm(forms.Form):
    """One Definition of Done check: what runs, and what it must show to pass."""

    name = forms.CharField(label="Check name", error_messages={"required": "Name the check."})
    command = forms.CharField(
        label="Command", help_text="The program and its arguments, quoted as in a shell; "
                                   "HAAO runs it without one.",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "off",
                                      "class": "font-mono"}),
        error_messages={"required": "Enter the command to run."})
    expected_exit_code = forms.IntegerField(label="Exit code", required=False,
                                            help_text="0 when empty.")
    timeout_seconds = forms.IntegerField(label="Timeout (seconds)", required=False,
                                         help_text=f"{DEFAULT_TIMEOUT} when empty.")
    output_must_contain = forms.CharField(label="Output must contain", required=False,
                                          widget=_textarea(2), help_text="One text per line.")
    output_must_not_contain = forms.CharField(label="Output must not contain",
                                              required=False, widget=_textarea(2),
                                              help_text="One text per line.")

    def clean_command(self) -> list[str]:
        try:
            return shlex.split(self.cleaned_data["command"])
        except ValueError as error:
            raise forms.ValidationError(f"This command cannot be split into arguments: "
                                        f"{error}.", code="argv") from None

    def as_check(self) -> dict[str, Any]:
        data = self.cleaned_data
        check: dict[str, Any] = {
            "name": data["name"], "command": data["command"],
            "expected_exit_code": 0 if data["expected_exit_code"] is None
            else data["expected_exit_code"],
            "timeout_seconds": data["timeout_seconds"] or DEFAULT_TIMEOUT}
        for key in ("output_must_contain", "output_must_not_contain"):
            if _lines(data[key]):
                check[key] = _lines(data[key])
        return check

    @classmethod
    def initial_from(cls, check: dict[str, Any]) -> dict[str, Any]:
        return {"name": check.get("name", ""),
                "command": shlex.join(str(part) for part in check.get("command") or []),
                "expected_exit_code": check.get("expected_exit_code", 0),
                "timeout_seconds": check.get("timeout_seconds"),
                "output_must_contain": "\n".join(check.get("output_must_contain") or []),
                "output_must_not_contain": "\n".join(
                    check.get("output_must_not_contain") or [])}


CheckFormSet = forms.formset_factory(CheckForm, extra=1, can_delete=True, max_num=100,
                                    absolute_max=100)

# `$.definition_of_done[2].command[0]` → check 2, its field "command".
_CHECK_PATH = re.compile(r"\$\.definition_of_done\[(\d+)\]\.([a-z_]+)")
_LIST_PATH = re.compile(r"\$\.(constraints|allowed_paths)\[(\d+)\]")


@dataclass
class SpecFields:
    """A proposed ticket's field editor: its fields, its checks and every problem in words.

    Built from the stored spec (`of`) or from a POST (`bound`); `spec()` is the stored spec
    with the edited parts replaced, and `refuse()` puts the services' problems back next to
    the fields they concern.
    """

    form: TicketFieldsForm
    checks: Any  # a CheckFormSet
    other: list[str] = dataclasses.field(default_factory=list)

    @functools.cached_property
    def rows(self) -> list[CheckForm]:
        """The check rows that make the spec's checks, in order: kept ones and filled new
        ones (after `is_valid()`)."""
        return [row for index, row in enumerate(self.checks.forms)
                if row not in self.checks.deleted_forms
                and (index < self.checks.initial_form_count() or row.has_changed())]

    @classmethod
    def of(cls, spec: dict[str, Any], *, prefix: str) -> SpecFields:
        checks = CheckFormSet(prefix=f"{prefix}-checks", initial=[
            CheckForm.initial_from(check) for check in spec.get("definition_of_done") or []])
        return cls(TicketFieldsForm(prefix=prefix, initial=TicketFieldsForm.initial_from(spec)),
                   checks)

    @classmethod
    def bound(cls, data: Any, *, prefix: str) -> SpecFields:
        return cls(TicketFieldsForm(data, prefix=prefix),
                   CheckFormSet(data, prefix=f"{prefix}-checks"))

    def is_valid(self) -> bool:
        return self.form.is_valid() & self.checks.is_valid()

    def spec(self, stored: dict[str, Any]) -> dict[str, Any]:
        """`stored` with the title, objective, constraints, paths and checks of the fields."""
        data = self.form.cleaned_data
        spec = copy.deepcopy(stored)
        spec.update(title=data["title"], objective=data["objective"],
                    constraints=_lines(data["constraints"]),
                    allowed_paths=_lines(data["allowed_paths"]))
        spec["definition_of_done"] = [row.as_check() for row in self.rows]
        return spec

    def refuse(self, problems: list[SpecError]) -> None:
        """Each problem next to its field; what no field shows goes to the summary."""
        for problem in problems:
            check = _CHECK_PATH.match(problem.path)
            listed = _LIST_PATH.match(problem.path)
            if check and int(check[1]) < len(self.rows) \
                    and check[2] in self.rows[int(check[1])].fields:
                self.rows[int(check[1])].add_error(check[2], _sentence(problem.message))
            elif listed:
                self.form.add_error(listed[1], f"Line {int(listed[2]) + 1} "
                                               f"{problem.message}.")
            elif problem.path.removeprefix("$.") in self.form.fields:
                self.form.add_error(problem.path.removeprefix("$."), _sentence(problem.message))
            elif problem.path == "$.definition_of_done":
                self.other.append(f"Definition of Done {problem.message}.")
            else:
                self.other.append(f"{problem.path} {problem.message}.")

    def summary(self) -> list[str]:
        """Every problem as "Field: message", in the order the fields appear."""
        lines = [*self.other, *self.form.non_field_errors()]
        for name, field in self.form.fields.items():
            lines += [f"{field.label}: {error}" for error in self.form.errors.get(name, [])]
        lines += list(self.checks.non_form_errors())
        for number, row in enumerate(self.checks.forms, start=1):
            if getattr(row, "cleaned_data", {}).get("DELETE"):
                continue
            for name, field in row.fields.items():
                lines += [f"Check {number}, {field.label}: {error}"
                          for error in row.errors.get(name, [])]
        return lines


def _sentence(message: str) -> str:
    """A spec message ("must not be empty") as a sentence next to its field."""
    return f"{message[:1].upper()}{message[1:]}."


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

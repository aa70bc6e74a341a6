"""The report's filters, read from the query string by the portal, the CSV and the API alike."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django import forms

from accounts.models import Membership
from agents.models import InferenceEndpoint
from agents.reports.selectors import GROUPS, KINDS, ReportFilter, default_period
from haao.errors import ApplicationError
from tickets.selectors import project_by_key, requirement_by_key

# The longest period one report covers: ten years of daily ledger rows is plenty.
MAX_DAYS = 3660
GROUP_LABELS = {group: group.capitalize() for group in GROUPS}


class ReportFilterForm(forms.Form):
    """`from`, `to` (UTC days, inclusive), `project`, `requirement`, `model`, `endpoint`,
    `kind` (local or cloud) and `group` (how the rows are split)."""

    project = forms.CharField(max_length=10, required=False, label="Project",
                              help_text="Its key, e.g. PAY.")
    requirement = forms.CharField(max_length=40, required=False, label="Requirement",
                                  help_text="Its key, e.g. PAY-R3.")
    model = forms.CharField(max_length=200, required=False, label="Model")
    endpoint = forms.CharField(max_length=36, required=False, label="Endpoint",
                               widget=forms.Select)
    kind = forms.ChoiceField(required=False, label="Local or cloud",
                             choices=[("", "Both"), *((k, k.capitalize()) for k in KINDS)])
    group = forms.ChoiceField(required=False, label="Rows by",
                              choices=list(GROUP_LABELS.items()))

    def __init__(self, data: Any, *, membership: Membership) -> None:
        since, until = default_period()
        if not data.get("from") and not data.get("to"):
            data = data.copy()  # the page shows the period it reports
            data["from"], data["to"] = since.isoformat(), until.isoformat()
        super().__init__(data)
        self.membership = membership
        # `from` is a Python keyword, so these two are added by name.
        self.fields = {
            "from": forms.DateField(required=False, label="From", initial=since,
                                    widget=forms.DateInput(attrs={"type": "date"})),
            "to": forms.DateField(required=False, label="To", initial=until,
                                  widget=forms.DateInput(attrs={"type": "date"})),
            **self.fields,
        }
        self.endpoints = {str(e.pk): e for e in InferenceEndpoint.objects.for_org(
            membership.organization).order_by("name")}
        widget = self.fields["endpoint"].widget
        assert isinstance(widget, forms.Select)
        widget.choices = [("", "All endpoints"),
                          *((pk, e.name) for pk, e in self.endpoints.items())]

    def clean_project(self) -> Any:
        key = self.cleaned_data.get("project", "").strip().upper()
        if not key:
            return None
        project = project_by_key(membership=self.membership, key=key)
        if project is None:
            raise forms.ValidationError(f"There is no project '{key}' in this organization.")
        return project

    def clean_requirement(self) -> Any:
        key = self.cleaned_data.get("requirement", "").strip().upper()
        if not key:
            return None
        requirement = requirement_by_key(membership=self.membership, key=key)
        if requirement is None:
            raise forms.ValidationError(
                f"There is no requirement '{key}' in this organization (keys look like PAY-R3).")
        return requirement

    def clean_endpoint(self) -> Any:
        value = self.cleaned_data.get("endpoint", "")
        if not value:
            return None
        try:
            key = str(uuid.UUID(value))
        except ValueError:
            raise forms.ValidationError(f"'{value}' is not an endpoint id.") from None
        if key not in self.endpoints:
            raise forms.ValidationError(f"There is no endpoint {key} in this organization.")
        return self.endpoints[key]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("from"), data.get("to")
        default_since, default_until = default_period()
        if since and not until:
            until = max(since, default_until)
        if until and not since:
            since = until.replace(day=1)
        since, until = since or default_since, until or default_until
        if since > until:
            self.add_error("to", "The end date is before the start date.")
        elif until - since > timedelta(days=MAX_DAYS):
            self.add_error("to", f"A report covers at most {MAX_DAYS} days.")
        data["from"], data["to"] = since, until
        project, requirement = data.get("project"), data.get("requirement")
        if project is not None and requirement is not None and requirement.project_id != project.pk:
            self.add_error("requirement", f"{requirement.key} is not a requirement of "
                                          f"{project.key}.")
        return data

    def report_filter(self) -> ReportFilter:
        """The valid filter; call after `is_valid()`."""
        data = self.cleaned_data
        return ReportFilter(since=data["from"], until=data["to"], project=data.get("project"),
                            requirement=data.get("requirement"),
                            model=data.get("model", "").strip(), endpoint=data.get("endpoint"),
                            kind=data.get("kind") or "", group=data.get("group") or "project")

    def problem(self) -> ApplicationError:
        """The form's errors as one 400 that names each field."""
        details = {name: [str(error) for error in errors] for name, errors in self.errors.items()}
        text = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in details.items())
        return ApplicationError(f"Bad report filter: {text}", code="invalid_filter",
                                details=details)


def report_filter_from(data: Any, *, membership: Membership) -> ReportFilter:
    """The filter of a query string; a bad one raises a 400 naming each field."""
    form = ReportFilterForm(data, membership=membership)
    if not form.is_valid():
        raise form.problem()
    return form.report_filter()


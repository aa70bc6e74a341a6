"""Admin console pages of guardrail policies: the organization's, one project's, "try it".

Saving calls policies.services.policy_update once with the rules the admin changed; a
refused value comes back on its field with a 400 and nothing stored. "Try it" only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.roles import Capability
from haao.audit import Actor
from haao.secrets_registry import organization_secrets
from haao.text import displayable, displayable_data
from haao.views import OrgPage
from policies import rules
from policies.enforcement import policy_try
from policies.forms import PolicyForm, TryForm
from policies.models import Policy, PolicyVersion
from policies.redaction import redact
from policies.rules import PolicyInvalid, Rule
from policies.selectors import (
    DEFAULT,
    ORGANIZATION,
    EffectivePolicy,
    effective_policy,
    policy_row_values,
    policy_version,
    policy_versions,
)
from policies.services import policy_update
from tickets.models import Project
from tickets.selectors import projects_visible_to

VERSIONS_PAGE_SIZE = 50


def shown_value(rule: Rule, value: Any) -> str:
    """A rule's value in words, for tables and the history."""
    return displayable(_shown_value(rule, value))


def _shown_value(rule: Rule, value: Any) -> str:
    if value is None:
        return "no limit" if rule.nullable else "—"
    if rule.kind == "bool":
        return "on" if value else "off"
    if rule.kind in ("paths", "programs"):
        return ", ".join(str(item) for item in value) if value else "none"
    if rule.kind == "choice":
        return dict(rule.choices).get(value, str(value))
    if rule.kind == "money":
        return f"{Decimal(str(value)):.2f} USD"
    if rule.kind == "text":
        return str(value) or "—"
    return f"{value} {rule.unit}".strip()


@dataclass(frozen=True)
class RuleRow:
    """One rule as the page shows it."""

    rule: Rule
    field: Any
    value: Any
    source: str
    own: bool  # this page's row sets it (the organization's, or the project's override)
    organization_value: Any = None

    @property
    def shown(self) -> str:
        return shown_value(self.rule, self.value)

    @property
    def is_list(self) -> bool:
        return self.rule.kind in ("paths", "programs")

    @property
    def additive(self) -> bool:
        return self.rule.name in rules.ADDITIVE


@dataclass(frozen=True)
class DiffRow:
    label: str
    before: str
    after: str


def _diff(version: PolicyVersion, unset: str) -> list[DiffRow]:
    rows = []
    for name, change in sorted(version.changes.items()):
        rule = rules.BY_NAME.get(name)
        before, after = [*change, None, None][:2] if isinstance(change, list) else (None, None)
        if rule is None:
            rows.append(DiffRow(displayable(name), displayable(str(before)),
                                displayable(str(after))))
            continue
        rows.append(DiffRow(rule.label,
                            unset if before is None else shown_value(rule, before),
                            unset if after is None else shown_value(rule, after)))
    return rows


class _PolicyPage(OrgPage):
    """The organization's policy page, or one project's (when `project` is set)."""

    required_capability = Capability.MANAGE_POLICIES
    template_name = "policies/policy.html"
    project: Project | None = None

    def load(self, project_id: Any) -> None:
        if project_id is None:
            return
        project = projects_visible_to(membership=self.membership).filter(pk=project_id).first()
        if project is None:
            raise Http404("Not found.")
        self.project = project

    def page_url(self) -> str:
        if self.project is None:
            return self.org_url("console-policies")
        return self.org_url("console-policy-project", project_id=self.project.pk)

    def shown(self, effective: EffectivePolicy, own: dict[str, Any]) -> dict[str, Any]:
        """What each field starts from (a project's additions, for lists it adds to)."""
        values = effective.values()
        if self.project is not None:
            for name in rules.ADDITIVE:
                values[name] = rules.from_json(name, own.get(name, []))
        # Values stored before input was checked may hold unpaired surrogates.
        return {name: displayable_data(value) for name, value in values.items()}

    def state(self) -> tuple[EffectivePolicy, dict[str, Any], dict[str, Any]]:
        effective = effective_policy(organization=self.org, project=self.project)
        own = policy_row_values(organization=self.org, project=self.project)
        return effective, own, self.shown(effective, own)

    def page(self, status: int = 200, *, form: PolicyForm | None = None,
             try_form: TryForm | None = None, tried: dict[str, Any] | None = None
             ) -> HttpResponse:
        effective, own, shown = self.state()
        form = form or PolicyForm(shown=shown)
        organization = (effective_policy(organization=self.org, with_version=False)
                        if self.project is not None else None)
        groups = []
        for group, fields in form.groups():
            groups.append((group, [RuleRow(
                rule=rule, field=field, value=displayable_data(getattr(effective, rule.name)),
                source=effective.sources[rule.name], own=rule.name in own,
                organization_value=(displayable_data(getattr(organization, rule.name))
                                    if organization is not None else None))
                for rule, field in fields]))
        versions = Paginator(policy_versions(organization=self.org, project=self.project),
                             VERSIONS_PAGE_SIZE).get_page(self.request.GET.get("page"))
        history = [(version, _diff(version, "inherited" if version.project_id else "default"))
                   for version in versions.object_list]
        return self.render(status, project=self.project, effective=effective, form=form,
                           groups=groups, try_form=try_form or TryForm(), tried=tried,
                           page_obj=versions, organization_url=self.org_url("console-policies"),
                           history=history, projects=self.projects(),
                           page_url=self.page_url(), try_url=self.page_url() + "try/",
                           DEFAULT=DEFAULT, ORGANIZATION=ORGANIZATION)

    def projects(self) -> list[tuple[Project, list[str]]]:
        """The organization's projects and the rules each overrides (org page only)."""
        if self.project is not None:
            return []
        overrides = dict(Policy.objects.for_org(self.org).exclude(project=None)
                         .values_list("project_id", "values"))
        return [(project, [rules.BY_NAME[name].label for name in overrides.get(project.pk, {})
                           if name in rules.BY_NAME])
                for project in projects_visible_to(membership=self.membership)]

    def save(self, request: HttpRequest) -> HttpResponse:
        _, own, shown = self.state()
        form = PolicyForm(request.POST, shown=shown)
        if not form.is_valid():
            return self.page(400, form=form)
        inherit = [name for name in request.POST.getlist("inherit") if name]
        changes = {name: value for name, value in form.changes().items() if name not in inherit}
        if self.project is not None:
            for name in rules.ADDITIVE:
                # A project that adds nothing to the organization's list inherits it.
                if changes.get(name) == []:
                    del changes[name]
                    if name in own:
                        inherit.append(name)
        before = policy_version(organization=self.org)
        try:
            after = policy_update(organization=self.org, actor=Actor.of(self.user),
                                  changes=changes, project=self.project, inherit=inherit)
        except PolicyInvalid as error:
            for name, problems in error.details.items():
                field = name if name in form.fields else None
                for problem in problems if isinstance(problems, list) else [problems]:
                    label = "" if field else f"{name}: "
                    form.add_error(field, f"{label}{problem}")
            if not form.errors:
                form.add_error(None, error.message)
            return self.page(error.status, form=form)
        if after.version == before:
            messages.info(request, "Nothing changed.")
        else:
            messages.success(request, f"Policy saved as version {after.version}.")
        return redirect(self.page_url())

    def try_it(self, request: HttpRequest) -> HttpResponse:
        form = TryForm(request.POST)
        if not form.is_valid():
            return self.page(400, try_form=form)
        effective = effective_policy(organization=self.org, project=self.project)
        known = organization_secrets(organization=self.org)
        tried = policy_try(effective, path=form.cleaned_data["path"].strip(),
                           command=form.cleaned_data["command"],
                           payload=form.cleaned_data["payload"], known=known)
        # The form comes back with what was typed, its secrets redacted: the page shows no
        # secret, even the one just typed into it.
        typed = request.POST.copy()
        for name in ("path", "command", "payload"):
            typed[name] = redact(typed.get(name, ""), known=known).text
        form = TryForm(typed)
        form.is_valid()
        for decision in tried.values():
            rule = rules.BY_NAME.get(str(decision.get("rule", "")))
            if rule is not None:
                decision["rule_label"] = rule.label
        return self.page(try_form=form, tried=tried)


class PoliciesView(_PolicyPage):
    """The organization's policy: every rule with its source, history and projects."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.page()

    def post(self, request: HttpRequest) -> HttpResponse:
        return self.save(request)


class PolicyTryView(_PolicyPage):
    """What the organization's policy says of a path, a command and a payload."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        return self.try_it(request)


class ProjectPolicyView(_PolicyPage):
    """One project's override of the organization's policy."""

    def get(self, request: HttpRequest, project_id: Any) -> HttpResponse:
        self.load(project_id)
        return self.page()

    def post(self, request: HttpRequest, project_id: Any) -> HttpResponse:
        self.load(project_id)
        return self.save(request)


class ProjectPolicyTryView(_PolicyPage):
    """What a project's policy says of a path, a command and a payload."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, project_id: Any) -> HttpResponse:
        self.load(project_id)
        return self.try_it(request)

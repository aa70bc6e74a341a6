"""Portal pages of a project's repository settings: a new project, its settings, its deploy
key, its connection test and its setup check (admins).

The forms only carry text; tickets.services.project_settings.project_settings_clean decides, as for
the API, and a refusal re-renders the page with a 400 and the error on its field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect

from accounts.roles import Capability
from agents.preflight import setup_check
from agents.workspaces.remote import connection_test, deploy_key_generate, known_host_keys
from haao.errors import ApplicationError
from haao.text import redact_userinfo
from haao.views import OrgPage, no_store, service_error
from tickets import services
from tickets.keys import project_key_validator
from tickets.models import DeliveryMode, ForgeKind, Project, RepositoryAuth
from tickets.selectors import project_by_key, webhook_url
from tickets.services import project_settings

ARGV_FIELDS = ("setup_command", "test_command")
_MONO = {"spellcheck": "false", "autocomplete": "off", "class": "font-mono"}


def _argv_widget() -> forms.TextInput:
    return forms.TextInput(attrs={**_MONO, "placeholder": project_settings.ARGV_EXAMPLE})


class ProjectSettingsForm(forms.Form):
    """The settings of the API, as text; `values()` hands them to the service unchanged."""

    name = forms.CharField(max_length=100)
    description = forms.CharField(max_length=5000, required=False,
                                  widget=forms.Textarea(attrs={"rows": 2}))
    repository_url = forms.CharField(
        max_length=1024, required=False, label="Repository URL",
        widget=forms.TextInput(attrs=_MONO),
        help_text="https://github.com/team/app.git, git@host:team/app.git, or a path inside "
                  "HAAO_LOCAL_REPOSITORIES. Never put a token in the URL: use the token field "
                  "or a deploy key. Changing it forgets the stored token and pinned host keys.")
    default_branch = forms.CharField(max_length=200, initial="main",
                                     widget=forms.TextInput(attrs=_MONO))
    setup_command = forms.CharField(
        max_length=70_000, required=False, widget=_argv_widget(),
        help_text='An argv list in JSON, e.g. ["pip", "install", "-e", "."]; run without a '
                  "shell.")
    test_command = forms.CharField(max_length=70_000, required=False, widget=_argv_widget(),
                                   help_text='An argv list in JSON, e.g. ["pytest", "-q"].')
    auth_method = forms.ChoiceField(choices=RepositoryAuth.choices, label="Authentication",
                                    initial=RepositoryAuth.NONE)
    token = forms.CharField(
        max_length=services.MAX_TOKEN, required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: stored encrypted, never shown. Leave blank to keep the stored "
                  "token.")
    token_username = forms.CharField(max_length=100, required=False, label="Token user name",
                                     help_text="Blank: x-access-token on GitHub, oauth2 on "
                                               "GitLab, haao elsewhere.")
    delivery = forms.ChoiceField(choices=DeliveryMode.choices)
    forge = forms.ChoiceField(choices=[("", "Unknown"), *ForgeKind.choices], required=False,
                              help_text="Blank: told from the repository's host when it can be.")
    forge_api_url = forms.CharField(max_length=1024, required=False, label="Forge API URL",
                                    widget=forms.TextInput(attrs=_MONO),
                                    help_text="Blank: derived from the repository's host.")
    intake_label = forms.CharField(max_length=50, initial="haao",
                                   help_text="A forge issue with this label becomes a "
                                             "requirement.")

    def __init__(self, *args: Any, project: Project | None = None, **kwargs: Any) -> None:
        if project is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                name: getattr(project, project_settings.MODEL_FIELD.get(name, name))
                for name in project_settings.SETTINGS}
            for name in ARGV_FIELDS:
                kwargs["initial"][name] = json.dumps(kwargs["initial"][name] or [])
        super().__init__(*args, **kwargs)
        self.project = project
        url = self.data.get("repository_url", "")
        if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
            # A token typed into the URL must not be sent back in the re-rendered page; the
            # service refuses the redacted URL with the same words.
            data = QueryDict(mutable=True)
            data.update(self.data)
            data["repository_url"] = redact_userinfo(url)
            self.data = data

    def values(self) -> dict[str, Any]:
        """The settings changed from what the form showed, by API name (a new project's
        untouched fields keep the service's defaults). Argv text that is not a JSON list goes
        on as text, so the service refuses it with the same words as the API."""
        names = [n for n in project_settings.SETTINGS if n in self.changed_data]
        values: dict[str, Any] = {}
        for name in names:
            value = self.cleaned_data[name]
            if name in ARGV_FIELDS:
                value = _argv(value)
            values[name] = value
        return values


def _argv(text: str) -> Any:
    if not text.strip():
        return []
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # refused by the service as not an argv list
        return text
    return parsed if isinstance(parsed, list) else text


class ProjectCreateForm(ProjectSettingsForm):
    key = forms.CharField(max_length=10, validators=[project_key_validator],
                          help_text="2-10 capital letters or digits, e.g. PAY: the prefix of "
                                    "ticket keys.")
    delivery = forms.ChoiceField(
        choices=[("", "Automatic"), *DeliveryMode.choices], required=False,
        help_text="Automatic: pull requests on a known forge, a pushed branch on other hosts, "
                  "kept in HAAO for local paths.")
    field_order = ["key", "name"]

    def values(self) -> dict[str, Any]:
        values = super().values()
        if not values.get("delivery"):
            values.pop("delivery", None)
        if values.get("auth_method") == RepositoryAuth.NONE and self.cleaned_data["token"]:
            values.pop("auth_method")  # a token given means token authentication
        return values


class ProjectNewView(OrgPage):
    """Create a project and connect its repository (admins)."""

    required_capability = Capability.MANAGE_PROJECTS
    template_name = "tickets/project_new.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render(form=ProjectCreateForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ProjectCreateForm(request.POST)
        if not form.is_valid():
            return self.render(400, form=form)
        values = form.values()
        name, description = values.pop("name"), values.pop("description", "")
        try:
            project = services.project_create(
                organization=self.org, key=form.cleaned_data["key"], name=name,
                description=description, values=values, token=form.cleaned_data["token"],
                actor=self.user)
        except ApplicationError as error:
            service_error(form, error)
            return self.render(error.status, form=form)
        messages.success(request, f"Project {project.key} created. Test the connection next.")
        return redirect(f"/o/{self.org.slug}/projects/{project.key}/settings/")


class ProjectSettingsView(OrgPage):
    """A project's repository settings, deploy key, host keys, webhook and connection."""

    required_capability = Capability.MANAGE_PROJECTS
    template_name = "tickets/project_settings.html"

    def load(self, key: str) -> Project:
        project = project_by_key(membership=self.membership, key=key)
        if project is None:
            raise Http404("Not found.")
        return project

    def page(self, project: Project, status: int = 200,
             form: ProjectSettingsForm | None = None, **extra: Any) -> HttpResponse:
        secret = project_settings.revealed(project.webhook_secret)
        response = self.render(
            status, project=project,
            form=form if form is not None else ProjectSettingsForm(project=project),
            has_token=bool(project.token), host_keys=known_host_keys(project.ssh_known_hosts),
            report=project.connection_report, setup=project.setup_report,
            webhook_url=webhook_url(project),
            webhook_secret_hint=f"…{secret[-4:]}" if secret else "", **extra)
        return no_store(response)

    def get(self, request: HttpRequest, key: str) -> HttpResponse:
        return self.page(self.load(key))

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        project = self.load(key)
        form = ProjectSettingsForm(request.POST, project=project)
        if not form.is_valid():
            return self.page(project, 400, form)
        try:
            services.project_update(project=project, changes=form.values(),
                                    token=form.cleaned_data["token"], actor=self.user)
        except ApplicationError as error:
            service_error(form, error)
            return self.page(project, error.status, form)
        messages.success(request, "Settings saved.")
        return redirect(request.path)


class DeployKeyView(ProjectSettingsView):
    """Generate a new deploy key; the page shows its public half to add to the forge."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        project = self.load(key)
        deploy_key_generate(project=project, actor=self.user)
        messages.success(request, "A new deploy key was generated. Add its public key to the "
                                  "repository's deploy keys in the forge, then test the "
                                  "connection.")
        return redirect(f"/o/{self.org.slug}/projects/{project.key}/settings/")


class WebhookSecretView(ProjectSettingsView):
    """A new webhook secret, shown on this response only (never stored in the browser)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        project = self.load(key)
        secret = services.project_webhook_secret_rotate(project=project, actor=self.user)
        return self.page(project, new_webhook_secret=secret)


class ProjectCheckView(ProjectSettingsView):
    """Run one of the project's checks now and show its report in words."""

    http_method_names = ["post"]
    check: Callable[..., Any]

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        project = self.load(key)
        report = type(self).check(project=project, actor=self.user)
        (messages.success if report.ok else messages.error)(request, report.message)
        return redirect(f"/o/{self.org.slug}/projects/{project.key}/settings/")


class ConnectionTestView(ProjectCheckView):
    """Test the connection now."""

    check = connection_test


class SetupCheckView(ProjectCheckView):
    """Check the setup now (the test command on the default branch)."""

    check = setup_check

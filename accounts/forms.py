"""Forms of the organization admin console; every field is bounded and validated here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cryptography import x509
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import SSOConnection, SSOProtocol, User
from accounts.roles import Role, TokenScope
from accounts.sso.domains import normalize_domain
from haao.errors import ApplicationError
from tickets.models import Project
from tickets.services import GRANTS

TOKEN_DEFAULT_DAYS = 90
TOKEN_MAX_DAYS = 365
MAX_EMAIL_DOMAINS = 50
MAX_CERTIFICATE_CHARS = 16_384


class RoleForm(forms.Form):
    """A member's new role."""

    role = forms.ChoiceField(choices=Role.choices)


class InvitationForm(forms.Form):
    """Invite a person by email with a role."""

    email = forms.EmailField(max_length=254, help_text="The link works only for this address.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def clean_email(self) -> str:
        return str(self.cleaned_data["email"]).strip().lower()


def grant_field_name(project: Project) -> str:
    return f"project_{project.pk.hex}"


class ProjectGrantsForm(forms.Form):
    """Per-project grants (view, approve) of one member; one field per project of the org."""

    def __init__(self, *args: Any, projects: Iterable[Project],
                 current: dict[Any, set[str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.projects = list(projects)
        current = current or {}
        for project in self.projects:
            self.fields[grant_field_name(project)] = forms.MultipleChoiceField(
                label=str(project), required=False, widget=forms.CheckboxSelectMultiple,
                choices=[(name, name.capitalize()) for name in GRANTS],
                initial=sorted(current.get(project.pk, set())),
            )

    def grants(self) -> list[tuple[Project, set[str]]]:
        """The chosen grants per project, after validation."""
        return [(project, set(self.cleaned_data.get(grant_field_name(project), [])))
                for project in self.projects]


def _normalise_domain(raw: str) -> str:
    try:
        return normalize_domain(raw)
    except ApplicationError as error:
        raise ValidationError(error.message) from None


def _load_certificate(text: str) -> str:
    """The certificate as PEM; bare base64 (as in SAML metadata) gets PEM armour."""
    body = text.strip()
    if "-----BEGIN" not in body:
        compact = "".join(body.split())
        lines = [compact[i:i + 64] for i in range(0, len(compact), 64)]
        body = "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----"
    try:
        x509.load_pem_x509_certificate(body.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValidationError("This is not a valid X.509 certificate in PEM format "
                              "(-----BEGIN CERTIFICATE----- …).") from None
    return body + "\n"


class SSOConnectionForm(forms.Form):
    """The organization's identity provider. The client secret is write-only."""

    protocol = forms.ChoiceField(choices=SSOProtocol.choices, widget=forms.RadioSelect,
                                 initial=SSOProtocol.OIDC)
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled",
                                 help_text="Members can sign in through this identity provider.")
    email_domains = forms.CharField(
        max_length=2000, required=False, label="Email domains",
        help_text="Comma-separated, e.g. example.com, example.org. \"Sign in with SSO\" sends "
                  "these addresses here; the provider may sign in only addresses at domains "
                  "verified under Domains.")
    default_role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER,
                                     help_text="Role of people who join through SSO.")
    oidc_issuer = forms.URLField(max_length=200, required=False, assume_scheme="https",
                                 label="Issuer URL",
                                 help_text="OpenID Connect only, e.g. https://idp.example.com.")
    oidc_client_id = forms.CharField(max_length=255, required=False, label="Client ID",
                                     help_text="OpenID Connect only.")
    client_secret = forms.CharField(
        max_length=1000, required=False, label="Client secret", strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="OpenID Connect only. Write-only: leave empty to keep the stored secret.")
    saml_idp_entity_id = forms.CharField(max_length=1024, required=False,
                                         label="IdP entity ID", help_text="SAML only.")
    saml_sso_url = forms.URLField(max_length=1024, required=False, assume_scheme="https",
                                  label="IdP single sign-on URL", help_text="SAML only.")
    saml_x509_cert = forms.CharField(
        max_length=MAX_CERTIFICATE_CHARS, required=False, label="IdP signing certificate",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false",
                                     "class": "font-mono text-xs"}),
        help_text="SAML only. PEM, starting with -----BEGIN CERTIFICATE-----.")

    def __init__(self, *args: Any, connection: SSOConnection | None = None,
                 **kwargs: Any) -> None:
        if connection is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "protocol": connection.protocol, "enabled": connection.enabled,
                "email_domains": ", ".join(connection.email_domains),
                "default_role": connection.default_role,
                "oidc_issuer": connection.oidc_issuer,
                "oidc_client_id": connection.oidc_client_id,
                "saml_idp_entity_id": connection.saml_idp_entity_id,
                "saml_sso_url": connection.saml_sso_url,
                "saml_x509_cert": connection.saml_x509_cert,
            }
        super().__init__(*args, **kwargs)
        self.has_stored_secret = bool(connection and connection.oidc_client_secret)

    def clean_email_domains(self) -> list[str]:
        raw = str(self.cleaned_data.get("email_domains") or "")
        parts = [part for part in re.split(r"[,\s]+", raw) if part.strip()]
        if len(parts) > MAX_EMAIL_DOMAINS:
            raise ValidationError(f"List at most {MAX_EMAIL_DOMAINS} domains.")
        domains: list[str] = []
        errors: list[ValidationError] = []
        for part in parts:
            try:
                domain = _normalise_domain(part)
            except ValidationError as error:
                errors.append(error)
                continue
            if domain not in domains:
                domains.append(domain)
        if errors:
            raise ValidationError(errors)
        return domains

    def clean_saml_x509_cert(self) -> str:
        text = str(self.cleaned_data.get("saml_x509_cert") or "")
        return _load_certificate(text) if text.strip() else ""

    def clean_client_secret(self) -> str | None:
        secret = str(self.cleaned_data.get("client_secret") or "")
        if secret != secret.strip():
            raise ValidationError("The client secret must not begin or end with spaces.")
        return secret or None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        protocol = data.get("protocol")
        required: dict[str, str] = {}
        if protocol == SSOProtocol.OIDC:
            required = {"oidc_issuer": "Enter the issuer URL of your OpenID provider.",
                        "oidc_client_id": "Enter the client ID registered at your provider."}
            if not self.has_stored_secret and "client_secret" not in self.errors:
                required["client_secret"] = "Enter the client secret (none is stored yet)."  # noqa: S105
        elif protocol == SSOProtocol.SAML:
            required = {"saml_idp_entity_id": "Enter the entity ID of your identity provider.",
                        "saml_sso_url": "Enter the single sign-on URL of your identity provider.",
                        "saml_x509_cert": "Paste the signing certificate of your identity "
                                          "provider."}
        for name, message in required.items():
            if name not in self.errors and not data.get(name):
                self.add_error(name, message)
        return data

    def service_fields(self) -> dict[str, Any]:
        """The cleaned values in the shape `sso_connection_save(fields=…)` takes."""
        data = self.cleaned_data
        oidc = data["protocol"] == SSOProtocol.OIDC
        return {
            "protocol": data["protocol"], "enabled": data["enabled"],
            "email_domains": data["email_domains"], "default_role": data["default_role"],
            # Settings of the other protocol are cleared so a switch leaves nothing stale.
            "oidc_issuer": data["oidc_issuer"] if oidc else "",
            "oidc_client_id": data["oidc_client_id"] if oidc else "",
            "saml_idp_entity_id": "" if oidc else data["saml_idp_entity_id"],
            "saml_sso_url": "" if oidc else data["saml_sso_url"],
            "saml_x509_cert": "" if oidc else data["saml_x509_cert"],
        }


class DomainForm(forms.Form):
    """An email domain the organization claims; verified afterwards by DNS."""

    domain = forms.CharField(max_length=253, label="Email domain",
                             help_text="The part after @ in your members' addresses, e.g. "
                                       "example.com. Each subdomain is verified on its own.")

    def clean_domain(self) -> str:
        return _normalise_domain(str(self.cleaned_data.get("domain") or ""))


class _UserByEmailField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.email)


class SSOPolicyForm(forms.Form):
    """Whether members must use SSO, and which admin may still use a password."""

    sso_required = forms.BooleanField(
        required=False, label="Require SSO",
        help_text="Members must sign in through the organization's identity provider.")
    break_glass_user = _UserByEmailField(
        queryset=User.objects.none(), required=False, label="Break-glass admin",
        empty_label="Nobody", help_text="An admin who may still sign in with a password "
                                        "(and MFA) when the identity provider is down.")

    def __init__(self, *args: Any, admins: QuerySet[User], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["break_glass_user"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = admins


class UnsandboxedChecksForm(forms.Form):
    """Whether checks may run without bubblewrap, and why (required to turn it on)."""

    allowed = forms.BooleanField(
        required=False, label="Allow unsandboxed checks",
        help_text="When a worker has no bubblewrap, run checks without isolation instead of "
                  "refusing them.")
    reason = forms.CharField(
        required=False, max_length=500, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when allowing: why this risk is accepted (at most 500 characters).")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("allowed") and not (data.get("reason") or "").strip():
            self.add_error("reason", "Say why checks may run without a sandbox.")
        return data


def default_token_expiry() -> date:
    return timezone.now().date() + timedelta(days=TOKEN_DEFAULT_DAYS)


class ApiTokenForm(forms.Form):
    """A new API token: name, scopes and expiry date."""

    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “CI pipeline”.")
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices, widget=forms.CheckboxSelectMultiple, initial=["read"],
        help_text="Write includes read; admin includes both. A token never does more than "
                  "your role allows.")
    expires_on = forms.DateField(
        label="Expires on", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text=f"At most one year from today; the token stops working at 00:00 UTC of "
                  f"this day. Default: {TOKEN_DEFAULT_DAYS} days.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        today = timezone.now().date()
        self.fields["expires_on"].initial = default_token_expiry
        self.fields["expires_on"].widget.attrs.update(
            min=(today + timedelta(days=1)).isoformat(),
            max=(today + timedelta(days=TOKEN_MAX_DAYS)).isoformat())

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        if not name:
            raise ValidationError("Give the token a name.")
        return name

    def clean_expires_on(self) -> date:
        value: date = self.cleaned_data["expires_on"]
        today = timezone.now().date()
        if value <= today:
            raise ValidationError("Choose a date after today.")
        if value > today + timedelta(days=TOKEN_MAX_DAYS):
            raise ValidationError("A token may live at most one year; choose an earlier date.")
        return value

    def expires_at(self) -> datetime:
        return datetime.combine(self.cleaned_data["expires_on"], time.min, tzinfo=UTC)


class AuditFilterForm(forms.Form):
    """Filters of the audit log (read from the query string)."""

    actor = forms.CharField(max_length=254, required=False, label="Actor",
                            help_text="Email or name contains.")
    type = forms.ChoiceField(required=False, label="Event type")
    date_from = forms.DateField(required=False, label="From",
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To",
                              widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, types: Iterable[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["type"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "All types"), *((t, t) for t in types)]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

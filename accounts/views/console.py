"""The organization admin console: members, invitations, SSO, API tokens and the audit log.

Each POST handler validates a form from accounts/forms.py and calls one service; domain
errors (ApplicationError) become form errors or messages, never a 500.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views import View
from django.views.generic import TemplateView

from accounts import services
from accounts.forms import (
    ApiTokenForm,
    AuditFilterForm,
    InvitationForm,
    ProjectGrantsForm,
    RoleForm,
    SSOConnectionForm,
    SSOPolicyForm,
    UnsandboxedChecksForm,
)
from accounts.models import (
    ApiToken,
    AuditEvent,
    Invitation,
    Membership,
    SSOConnection,
    SSOProtocol,
    User,
)
from accounts.roles import Capability, Role
from accounts.views.base import OrgView
from haao.errors import ApplicationError
from tickets import services as ticket_services
from tickets.models import Project, ProjectUserObjectPermission
from tickets.services import GRANTS

logger = logging.getLogger(__name__)

AUDIT_PAGE_SIZE = 50
SUMMARY_LENGTH = 160
# Spreadsheet programs run cells that start with these as formulas (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class ConsolePage(OrgView, TemplateView):
    """A console page that renders its template again, with a status, when input is bad."""

    def render(self, status: int = 200, **context: Any) -> HttpResponse:
        response = self.render_to_response(self.get_context_data(**context), status=status)
        assert isinstance(response, HttpResponse)
        return response

    @property
    def user(self) -> User:
        """The signed-in member (OrgView turned anonymous callers away)."""
        return cast(User, self.request.user)

    def org_url(self, name: str, **kwargs: Any) -> str:
        return reverse(name, kwargs={"org": self.org.slug, **kwargs})


def _no_store(response: HttpResponse) -> HttpResponse:
    """Pages that show a secret once must not be kept by the browser or a proxy."""
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store, " + response["Cache-Control"]
    return response


def _service_error(form: Any, error: ApplicationError | ValidationError) -> None:
    """Put a domain error on the form: on the field its details name, else on the form."""
    if isinstance(error, ValidationError):
        if hasattr(error, "error_dict"):
            for field, errors in error.error_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, error)
        return
    fields = [name for name in error.details if name in form.fields]
    form.add_error(fields[0] if fields else None, error.message)


# --- Members ---------------------------------------------------------------------------------

class MembersView(ConsolePage):
    """Members with their role; change a role, remove a member."""

    required_capability = Capability.MANAGE_MEMBERS
    template_name = "console/members.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        members = (Membership.objects.for_org(self.org).select_related("user")
                   .order_by("created_at"))
        context.update(members=members, roles=Role.choices,
                       admin_count=sum(1 for m in members if m.role == Role.ADMIN))
        return context


class _MemberAction(MembersView):
    http_method_names = ["post"]

    def target(self, membership_id: Any) -> Membership:
        membership = (Membership.objects.for_org(self.org).select_related("user")
                      .filter(pk=membership_id).first())
        if membership is None:
            raise Http404("Not found.")
        return membership

    def failed(self, message: str, status: int) -> HttpResponse:
        messages.error(self.request, message)
        return self.render(status)


class MemberRoleView(_MemberAction):
    """Change one member's role."""

    def post(self, request: HttpRequest, membership_id: Any) -> HttpResponse:
        target = self.target(membership_id)
        form = RoleForm(request.POST)
        if not form.is_valid():
            return self.failed("Choose one of the roles: "
                               + ", ".join(str(label) for _, label in Role.choices) + ".", 400)
        try:
            updated = services.membership_set_role(
                organization=self.org, membership=target, role=form.cleaned_data["role"],
                actor=self.user)
        except ApplicationError as error:
            return self.failed(error.message, error.status)
        messages.success(request, f"{updated.user.email} is now {updated.get_role_display()}.")
        if updated.pk == self.membership.pk and updated.role != Role.ADMIN:
            return redirect("org-overview", org=self.org.slug)
        return redirect(self.org_url("console-members"))


class MemberRemoveView(_MemberAction):
    """Remove a member from the organization (their tokens are revoked with it)."""

    def post(self, request: HttpRequest, membership_id: Any) -> HttpResponse:
        target = self.target(membership_id)
        try:
            services.membership_remove(organization=self.org, membership=target,
                                       actor=self.user)
        except ApplicationError as error:
            return self.failed(error.message, error.status)
        messages.success(request, f"{target.user.email} was removed from {self.org.name}.")
        if target.pk == self.membership.pk:
            return redirect("home")
        return redirect(self.org_url("console-members"))


class MemberDetailView(ConsolePage):
    """One member's per-project grants (view, approve)."""

    required_capability = Capability.MANAGE_PROJECTS
    template_name = "console/member_detail.html"

    def load(self, membership_id: Any) -> tuple[Membership, list[Project], dict[Any, set[str]]]:
        target = (Membership.objects.for_org(self.org).select_related("user")
                  .filter(pk=membership_id).first())
        if target is None:
            raise Http404("Not found.")
        projects = list(Project.objects.for_org(self.org).order_by("name"))
        codename_to_grant = {perm: name for name, perm in GRANTS.items()}
        current: dict[Any, set[str]] = {}
        rows = (ProjectUserObjectPermission.objects
                .filter(user=target.user, content_object__organization=self.org)
                .values_list("content_object_id", "permission__codename"))
        for project_id, codename in rows:
            if codename in codename_to_grant:
                current.setdefault(project_id, set()).add(codename_to_grant[codename])
        return target, projects, current

    def get(self, request: HttpRequest, membership_id: Any) -> HttpResponse:
        target, projects, current = self.load(membership_id)
        form = ProjectGrantsForm(projects=projects, current=current)
        return self.render(target=target, form=form)

    def post(self, request: HttpRequest, membership_id: Any) -> HttpResponse:
        target, projects, current = self.load(membership_id)
        form = ProjectGrantsForm(request.POST, projects=projects, current=current)
        if not form.is_valid():
            return self.render(400, target=target, form=form)
        try:
            with transaction.atomic():  # all projects or none
                for project, grants in form.grants():
                    ticket_services.project_grant_set(
                        organization=self.org, project=project, user=target.user,
                        grants=grants, actor=self.user)
        except ApplicationError as error:
            form.add_error(None, error.message)
            return self.render(error.status, target=target, form=form)
        messages.success(request, f"Project access of {target.user.email} saved.")
        return redirect(self.org_url("console-member", membership_id=target.pk))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        target = context.get("target")
        context["sees_all_projects"] = bool(
            target and target.role in (Role.ADMIN, Role.MANAGER))
        return context


# --- Invitations -----------------------------------------------------------------------------

def invitation_link(raw_token: str) -> str:
    return settings.BASE_URL + reverse("invitation", kwargs={"token": raw_token})


def _send_invitation(*, invitation: Invitation, link: str, org_name: str,
                     failures: list[str]) -> None:
    try:
        send_mail(
            subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}You are invited to {org_name}",
            message=(f"You were invited to join {org_name} on HAAO as "
                     f"{invitation.get_role_display().lower()}.\n\nAccept the invitation: "
                     f"{link}\n\nThe link works once, only for {invitation.email}, and expires "
                     f"on {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"),
            from_email=None, recipient_list=[invitation.email],
        )
    except Exception:  # the link is on screen; a mail outage must not lose it
        logger.exception("Could not send the invitation email for invitation %s",
                         invitation.pk)
        failures.append(invitation.email)


class InvitationsView(ConsolePage):
    """Invite people by email; list and revoke invitations."""

    required_capability = Capability.MANAGE_MEMBERS
    template_name = "console/invitations.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", InvitationForm())
        context["invitations"] = (Invitation.objects.for_org(self.org)
                                  .select_related("invited_by", "accepted_by")
                                  .order_by("-created_at"))
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = InvitationForm(request.POST)
        if not form.is_valid():
            return self.render(400, form=form)
        try:
            invitation, raw = services.invitation_create(
                organization=self.org, email=form.cleaned_data["email"],
                role=form.cleaned_data["role"], actor=self.user)
        except ApplicationError as error:
            _service_error(form, error)
            return self.render(error.status, form=form)
        link = invitation_link(raw)
        failures: list[str] = []
        transaction.on_commit(lambda: _send_invitation(
            invitation=invitation, link=link, org_name=self.org.name, failures=failures))
        if failures:
            messages.warning(request, f"The email to {invitation.email} could not be sent; "
                                      "copy the link below and send it yourself.")
        # The link is rendered in this response only (never stored), so a reload cannot show it.
        return _no_store(self.render(new_invitation=invitation, new_link=link,
                                     email_sent=not failures))


class InvitationRevokeView(ConsolePage):
    required_capability = Capability.MANAGE_MEMBERS
    http_method_names = ["post"]

    def post(self, request: HttpRequest, invitation_id: Any) -> HttpResponse:
        invitation = Invitation.objects.for_org(self.org).filter(pk=invitation_id).first()
        if invitation is None:
            raise Http404("Not found.")
        try:
            services.invitation_revoke(organization=self.org, invitation=invitation,
                                       actor=self.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"The invitation for {invitation.email} was revoked.")
        return redirect(self.org_url("console-invitations"))


# --- SSO -------------------------------------------------------------------------------------

class SSOView(ConsolePage):
    """The organization's identity provider and its SSO policy."""

    required_capability = Capability.MANAGE_SSO
    template_name = "console/sso.html"

    def connection(self) -> SSOConnection | None:
        return SSOConnection.objects.for_org(self.org).first()

    def admins(self) -> QuerySet[User]:
        return User.objects.filter(memberships__organization=self.org,
                                   memberships__role=Role.ADMIN).order_by("email")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        connection = kwargs["connection"] if "connection" in kwargs else self.connection()
        context["connection"] = connection
        context.setdefault("form", SSOConnectionForm(connection=connection))
        context.setdefault("policy_form", SSOPolicyForm(
            admins=self.admins(),
            initial={"sso_required": self.org.sso_required,
                     "break_glass_user": self.org.break_glass_user_id}))
        context.setdefault("unsandboxed_form", UnsandboxedChecksForm(
            initial={"allowed": self.org.allow_unsandboxed_checks}))
        slug = self.org.slug
        context.update(
            oidc_redirect_uri=f"{settings.BASE_URL}/accounts/oidc/org-{slug}/login/callback/",
            saml_acs_url=f"{settings.BASE_URL}/accounts/saml/{slug}/acs/",
            saml_entity_id=f"{settings.BASE_URL}/accounts/saml/{slug}/metadata/",
            protocols=SSOProtocol,
        )
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        connection = self.connection()
        form = SSOConnectionForm(request.POST, connection=connection)
        if not form.is_valid():
            return self.render(400, form=form, connection=connection)
        try:
            saved = services.sso_connection_save(
                organization=self.org, actor=self.user,
                fields=form.service_fields(), client_secret=form.cleaned_data["client_secret"])
        except (ApplicationError, ValidationError) as error:
            _service_error(form, error)
            status = error.status if isinstance(error, ApplicationError) else 400
            return self.render(status, form=form, connection=connection)
        messages.success(request, f"{saved.get_protocol_display()} settings saved.")
        return redirect(self.org_url("console-sso"))


class SSOPolicyView(SSOView):
    """Require SSO for members, with an optional break-glass admin."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        form = SSOPolicyForm(request.POST, admins=self.admins())
        if not form.is_valid():
            return self.render(400, policy_form=form)
        try:
            services.organization_set_sso_policy(
                organization=self.org, actor=self.user,
                sso_required=form.cleaned_data["sso_required"],
                break_glass_user=form.cleaned_data["break_glass_user"])
        except ApplicationError as error:
            _service_error(form, error)
            return self.render(error.status, policy_form=form)
        messages.success(request, "SSO policy saved.")
        return redirect(self.org_url("console-sso"))


class UnsandboxedChecksView(SSOView):
    """The organization's explicit opt-in to checks without bubblewrap (Security)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        form = UnsandboxedChecksForm(request.POST)
        if not form.is_valid():
            return self.render(400, unsandboxed_form=form)
        try:
            services.organization_set_unsandboxed(
                organization=self.org, actor=self.user, allowed=form.cleaned_data["allowed"],
                reason=form.cleaned_data["reason"])
        except ApplicationError as error:
            _service_error(form, error)
            return self.render(error.status, unsandboxed_form=form)
        messages.success(request, "Unsandboxed checks are now allowed."
                         if form.cleaned_data["allowed"] else "Unsandboxed checks are now refused.")
        return redirect(self.org_url("console-sso"))


# --- API tokens ------------------------------------------------------------------------------

class TokensView(ConsolePage):
    """Every member's own API tokens; admins also see (and may revoke) everyone's."""

    template_name = "console/tokens.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", ApiTokenForm())
        tokens = ApiToken.objects.for_org(self.org).order_by("-created_at")
        context["own_tokens"] = tokens.filter(user=self.user)
        is_admin = self.can(Capability.MANAGE_MEMBERS)
        context["is_admin"] = is_admin
        if is_admin:
            context["all_tokens"] = tokens.select_related("user")
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ApiTokenForm(request.POST)
        if not form.is_valid():
            return self.render(400, form=form)
        try:
            token, raw = services.api_token_create(
                organization=self.org, user=self.user,
                name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at())
        except ApplicationError as error:
            _service_error(form, error)
            return self.render(error.status, form=form)
        # Rendered in this response only: the plaintext is never stored, not even in a session.
        return _no_store(self.render(new_token=token, new_token_value=raw))


class TokenRevokeView(ConsolePage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, token_id: Any) -> HttpResponse:
        tokens = ApiToken.objects.for_org(self.org)
        if not self.can(Capability.MANAGE_MEMBERS):
            tokens = tokens.filter(user=self.user)  # someone else's token: 404
        token = tokens.filter(pk=token_id).first()
        if token is None:
            raise Http404("Not found.")
        try:
            services.api_token_revoke(organization=self.org, token=token,
                                      actor=self.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"The token “{token.name}” ({token.prefix}…) was revoked.")
        return redirect(self.org_url("console-tokens"))


# --- Audit log -------------------------------------------------------------------------------

def _audit_types(org: Any) -> list[str]:
    return list(AuditEvent.objects.for_org(org).order_by("type")
                .values_list("type", flat=True).distinct())


def _audit_events(org: Any, filters: dict[str, Any]) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.for_org(org).order_by("-seq")
    if filters.get("actor"):
        events = events.filter(Q(actor_label__icontains=filters["actor"])
                               | Q(actor_user__name__icontains=filters["actor"]))
    if filters.get("type"):
        events = events.filter(type=filters["type"])
    if filters.get("date_from"):
        events = events.filter(created_at__date__gte=filters["date_from"])
    if filters.get("date_to"):
        events = events.filter(created_at__date__lte=filters["date_to"])
    return events


def summarize(data: Any) -> str:
    """A one-line reading of an event's data, e.g. `before: member, after: admin`."""
    if not data:
        return ""
    if isinstance(data, dict):
        parts = [f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
                 for key, value in data.items()]
        text = ", ".join(parts)
    else:
        text = json.dumps(data)
    return text if len(text) <= SUMMARY_LENGTH else text[:SUMMARY_LENGTH - 1] + "…"


class AuditLogView(ConsolePage):
    """The organization's audit log, filtered and paginated (newest first)."""

    required_capability = Capability.VIEW_AUDIT
    template_name = "console/audit.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        types = _audit_types(self.org)
        form = AuditFilterForm(request.GET or None, types=types)
        if form.is_bound and not form.is_valid():
            return self.render(400, form=form, page_obj=None, events=[], filtered=True)
        filters = form.cleaned_data if form.is_bound else {}
        paginator = Paginator(_audit_events(self.org, filters).select_related("actor_user"),
                              AUDIT_PAGE_SIZE)
        page_obj = paginator.get_page(request.GET.get("page"))
        events = list(page_obj.object_list)
        for event in events:
            event.summary = summarize(event.data)
        query = request.GET.copy()
        query.pop("page", None)
        return self.render(form=form, page_obj=page_obj, events=events,
                           filtered=any(filters.values()) if filters else False,
                           csv_url=self.org_url("console-audit-csv")
                           + (f"?{query.urlencode()}" if query else ""))


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: formula-like values get a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


class AuditCSVView(OrgView, View):
    """The filtered audit log as CSV, streamed row by row."""

    required_capability = Capability.VIEW_AUDIT

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        form = AuditFilterForm(request.GET, types=_audit_types(self.org))
        if not form.is_valid():
            problems = "; ".join(f"{name}: {' '.join(str(e) for e in errors)}"
                                 for name, errors in form.errors.items())
            return HttpResponse(f"Bad filter: {problems}\n", status=400,
                                content_type="text/plain; charset=utf-8")
        events = _audit_events(self.org, form.cleaned_data)
        slug = self.org.slug
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
            yield writer.writerow(["seq", "time", "actor_type", "actor", "type", "target_type",
                                   "target_id", "target", "data"])
            for event in events.iterator(chunk_size=1000):
                yield writer.writerow([csv_cell(v) for v in (
                    event.seq, event.created_at.isoformat(), event.actor_type,
                    event.actor_label, event.type, event.target_type, event.target_id,
                    event.target_label,
                    json.dumps(event.data, sort_keys=True, ensure_ascii=False),
                )])

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="audit-{slug}-{stamp}.csv"')
        return response


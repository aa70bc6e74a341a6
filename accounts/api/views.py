"""REST endpoints of organizations, members, invitations, API tokens and the audit log.

Every organization endpoint derives from haao.endpoints.OrgEndpoint, so tenancy, role and
token scope are checked before any handler runs; each write calls one service.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services
from accounts.api import serializers as s
from accounts.models import ApiToken, Invitation, Membership, Organization, User
from accounts.roles import SCOPE_IMPLIES, Capability, TokenScope
from accounts.selectors import audit_events_readable, organizations_of
from haao.api import READ_ERRORS, WRITE_ERRORS, CursorPagination, errors, validated
from haao.endpoints import OrgEndpoint
from haao.errors import Forbidden
from haao.models import AuditEvent

DEFAULT_TOKEN_LIFETIME = timedelta(days=90)


# --- Organizations ---------------------------------------------------------------------------

class OrganizationPagination(CursorPagination):
    ordering = "slug"


@extend_schema(tags=["organizations"])
class OrganizationListView(generics.ListAPIView):
    """The caller's organizations; a token sees only its own organization.

    Not organization-scoped (there is no organization in the URL): it lists only
    organizations the caller is a member of. tests/test_tenancy_matrix.py lists it.
    """

    serializer_class = s.OrganizationSerializer
    pagination_class = OrganizationPagination

    def get_queryset(self) -> QuerySet[Organization]:
        if getattr(self, "swagger_fake_view", False):
            return Organization.objects.none()
        user: User = self.request.user  # type: ignore[assignment]
        organizations = organizations_of(user=user)
        if isinstance(self.request.auth, ApiToken):
            organizations = organizations.filter(pk=self.request.auth.organization_id)
        role = Membership.objects.filter(organization=OuterRef("pk"), user=user).values("role")
        return organizations.annotate(role=Subquery(role[:1]))

    @extend_schema(operation_id="organizations_list", responses={200: s.OrganizationSerializer,
                                                                 **errors(401, 404)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The organizations you belong to (a token: only its own) and your role in each."""
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["organizations"])
class OrganizationDetailView(OrgEndpoint):
    serializer_class = s.OrganizationSerializer

    @extend_schema(operation_id="organizations_retrieve",
                   responses={200: s.OrganizationSerializer, **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """The organization, with your role in it."""
        self.org.role = self.membership.role  # type: ignore[attr-defined]
        return Response(s.OrganizationSerializer(self.org).data)


# --- Members ---------------------------------------------------------------------------------

@extend_schema(tags=["members"])
class MemberListView(OrgEndpoint):
    serializer_class = s.MemberSerializer

    def get_queryset(self) -> QuerySet[Membership]:
        if self.is_schema_generation():
            return Membership.objects.none()
        return Membership.objects.for_org(self.org).select_related("user")

    @extend_schema(operation_id="members_list",
                   responses={200: s.MemberSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """The organization's members and their roles."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.MemberSerializer(page, many=True).data)


@extend_schema(tags=["members"])
class MemberDetailView(OrgEndpoint):
    required_capability = Capability.MANAGE_MEMBERS
    read_scope = TokenScope.ADMIN
    write_scope = TokenScope.ADMIN
    serializer_class = s.MemberSerializer

    def get_membership(self, membership: Any) -> Membership:
        return get_object_or_404(Membership.objects.for_org(self.org).select_related("user"),
                                 pk=membership)

    @extend_schema(operation_id="members_update_role", request=s.MemberRoleSerializer,
                   responses={200: s.MemberSerializer, **errors(*WRITE_ERRORS, 409)})
    def patch(self, request: Request, org: str, membership: Any) -> Response:
        """Change a member's role (admin scope, manage members); the last admin stays admin."""
        target = self.get_membership(membership)
        data = validated(s.MemberRoleSerializer, request)
        updated = services.membership_set_role(organization=self.org, membership=target,
                                               role=data["role"], actor=self.actor)
        return Response(s.MemberSerializer(updated).data)

    @extend_schema(operation_id="members_remove", request=None,
                   responses={204: None, **errors(401, 403, 404, 409)})
    def delete(self, request: Request, org: str, membership: Any) -> Response:
        """Remove a member and revoke their tokens; the last admin cannot be removed."""
        target = self.get_membership(membership)
        services.membership_remove(organization=self.org, membership=target, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Invitations -----------------------------------------------------------------------------

@extend_schema(tags=["invitations"])
class InvitationListView(OrgEndpoint):
    required_capability = Capability.MANAGE_MEMBERS
    read_scope = TokenScope.ADMIN
    write_scope = TokenScope.ADMIN
    serializer_class = s.InvitationSerializer

    def get_queryset(self) -> QuerySet[Invitation]:
        if self.is_schema_generation():
            return Invitation.objects.none()
        return Invitation.objects.for_org(self.org).select_related("invited_by")

    @extend_schema(operation_id="invitations_list",
                   responses={200: s.InvitationSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """Invitations of the organization, newest first, with their status."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.InvitationSerializer(page, many=True).data)

    @extend_schema(operation_id="invitations_create", request=s.InvitationCreateSerializer,
                   responses={201: s.InvitationCreatedSerializer, **errors(*WRITE_ERRORS, 409)})
    def post(self, request: Request, org: str) -> Response:
        """Invite someone by email with a role; the link and token are returned only here."""
        data = validated(s.InvitationCreateSerializer, request)
        invitation, raw = services.invitation_create(
            organization=self.org, email=data["email"], role=data["role"], actor=self.actor)
        link = services.invitation_link(raw)
        body = {**s.InvitationSerializer(invitation).data, "token": raw, "url": link}
        return Response(body,
                        status=status.HTTP_201_CREATED)


@extend_schema(tags=["invitations"])
class InvitationDetailView(OrgEndpoint):
    required_capability = Capability.MANAGE_MEMBERS
    read_scope = TokenScope.ADMIN
    write_scope = TokenScope.ADMIN
    serializer_class = s.InvitationSerializer

    @extend_schema(operation_id="invitations_revoke", request=None,
                   responses={204: None, **errors(401, 403, 404, 409)})
    def delete(self, request: Request, org: str, invitation: Any) -> Response:
        """Revoke a pending invitation; its link stops working."""
        target = get_object_or_404(Invitation.objects.for_org(self.org), pk=invitation)
        services.invitation_revoke(organization=self.org, invitation=target, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- API tokens ------------------------------------------------------------------------------

class TokenVisibility(OrgEndpoint):
    """Members see and revoke their own tokens; admins those of the whole organization."""

    def get_queryset(self) -> QuerySet[ApiToken]:
        if self.is_schema_generation():
            return ApiToken.objects.none()
        tokens = ApiToken.objects.for_org(self.org).select_related("user")
        if self.can(Capability.MANAGE_MEMBERS):
            return tokens
        return tokens.filter(user=self.actor)


@extend_schema(tags=["tokens"])
class ApiTokenListView(TokenVisibility):
    serializer_class = s.ApiTokenSerializer

    @extend_schema(operation_id="tokens_list",
                   responses={200: s.ApiTokenSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """Your API tokens in this organization (admins: every member's)."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ApiTokenSerializer(page, many=True).data)

    @extend_schema(operation_id="tokens_create", request=s.ApiTokenCreateSerializer,
                   responses={201: s.ApiTokenCreatedSerializer, **errors(*WRITE_ERRORS)})
    def post(self, request: Request, org: str) -> Response:
        """Create a token for yourself; the plaintext is returned only here."""
        data = validated(s.ApiTokenCreateSerializer, request)
        scopes = set(data["scopes"])
        current = self.token()
        if current is not None:
            # A token may hand on at most what it holds itself.
            held: set[str] = set()
            for scope in current.scopes:
                held |= SCOPE_IMPLIES.get(scope, frozenset())
            wider = sorted(scopes - held)
            if wider:
                raise Forbidden(f"This token cannot create a token with more scopes than its "
                                f"own; it lacks: {', '.join(wider)}.",
                                details={"scopes": [f"not held: {', '.join(wider)}"]})
        expires_at = data.get("expires_at")
        if expires_at is None:
            expires_at = timezone.now() + DEFAULT_TOKEN_LIFETIME
            if current is not None:
                expires_at = min(expires_at, current.expires_at)
        token, raw = services.api_token_create(
            organization=self.org, user=self.actor, name=data["name"],
            scopes=scopes, expires_at=expires_at, parent=current)
        body = {**s.ApiTokenSerializer(token).data, "token": raw}
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(tags=["tokens"])
class ApiTokenDetailView(TokenVisibility):
    serializer_class = s.ApiTokenSerializer

    @extend_schema(operation_id="tokens_revoke", request=None,
                   responses={204: None, **errors(401, 403, 404, 409)})
    def delete(self, request: Request, org: str, token: Any) -> Response:
        """Revoke a token (your own; admins: anyone's)."""
        target = get_object_or_404(self.get_queryset(), pk=token)
        services.api_token_revoke(organization=self.org, token=target, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Audit log -------------------------------------------------------------------------------

class UTCDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 time in any offset, in UTC (PostgreSQL refuses offsets past 15:59); a time
    whose UTC falls outside years 1-9999 is refused like any other bad value."""

    def to_python(self, value: Any) -> Any:
        parsed = super().to_python(value)
        if parsed is not None and timezone.is_aware(parsed):
            try:
                parsed = parsed.astimezone(UTC)
            except OverflowError:
                raise ValidationError("This time is out of range: use a year from 1 to 9999.",
                                      code="out_of_range") from None
        return parsed


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class IntegerFilter(django_filters.NumberFilter):
    """A whole number: `0.5` is refused, not rounded into a query."""

    field_class = forms.IntegerField


class AuditEventFilter(django_filters.FilterSet):
    type = django_filters.CharFilter(field_name="type", max_length=64,
                                     help_text="Event type, e.g. `membership.role_changed`.")
    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="iexact",
                                      max_length=255,
                                      help_text="Email of the acting user (or a model's name).")
    since = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte",
                              help_text="Events at or after this time.")
    until = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt",
                              help_text="Events before this time.")
    after_seq = IntegerFilter(
        field_name="seq", lookup_expr="gt", min_value=0, max_value=2**62,
        help_text="Only events after this sequence number, oldest first: poll with the last "
                  "`seq` you saw to follow the log.")

    class Meta:
        model = AuditEvent
        fields = ["type", "actor", "since", "until", "after_seq"]


class AuditPagination(CursorPagination):
    """Newest first; oldest first when following the log with `after_seq`."""

    ordering = "-seq"

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        return ("seq",) if request.query_params.get("after_seq") else ("-seq",)


@extend_schema(tags=["audit"])
class AuditEventListView(OrgEndpoint):
    required_capability = Capability.VIEW_AUDIT
    serializer_class = s.AuditEventSerializer
    pagination_class = AuditPagination
    filterset_class = AuditEventFilter

    def get_queryset(self) -> QuerySet[AuditEvent]:
        if self.is_schema_generation():
            return AuditEvent.objects.none()
        return audit_events_readable(membership=self.membership)

    @extend_schema(operation_id="audit_events_list",
                   responses={200: s.AuditEventSerializer(many=True),
                              **errors(400, *READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """The organization's audit log, newest first (oldest first with `after_seq`)."""
        events = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(events)
        return self.get_paginated_response(s.AuditEventSerializer(page, many=True).data)

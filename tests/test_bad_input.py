"""Bad input gets a clear 400 naming the problem, never a 500, and changes nothing.

Every API write endpoint with a body is listed in WRITE_ENDPOINTS with one valid body; the
cases (NUL bytes, huge strings, wrong types, missing fields, unknown values) are derived
from the endpoint's serializer. A new write endpoint fails
test_every_api_write_endpoint_is_covered until it is listed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIClient

from accounts import services
from accounts.api import serializers as account_serializers
from accounts.models import ApiToken, Invitation, Membership
from accounts.roles import Role
from agents import api as agent_api
from agents.models import InferenceEndpoint
from haao.endpoints import SAFE_METHODS
from haao.models import AuditEvent
from tests.factories import UserFactory
from tests.fixtures import Cast, token_client
from tests.routes import COVERED_ELSEWHERE, SCOPED
from tickets import api as ticket_api
from tickets.models import Project, ProjectUserObjectPermission

pytestmark = pytest.mark.django_db

MEGABYTE = "x" * (1024 * 1024)


@dataclass(frozen=True)
class Endpoint:
    route: str  # as in the URL resolver, to match the tenancy matrix
    method: str
    serializer: type[serializers.Serializer]
    valid: dict[str, Any]
    url: Callable[[Cast], str]
    unknown_values: dict[str, Any]  # a value of the right type that is not allowed


def _member_id(cast: Cast) -> str:
    return str(cast.membership(cast.member).pk)


WRITE_ENDPOINTS = [
    Endpoint("api/v1/orgs/<slug:org>/members/<uuid:membership>/", "PATCH",
             account_serializers.MemberRoleSerializer, {"role": "manager"},
             lambda c: f"/api/v1/orgs/acme/members/{_member_id(c)}/", {"role": "owner"}),
    Endpoint("api/v1/orgs/<slug:org>/invitations/", "POST",
             account_serializers.InvitationCreateSerializer,
             {"email": "new@example.test", "role": "member"},
             lambda c: "/api/v1/orgs/acme/invitations/",
             {"role": "superuser", "email": "not-an-email"}),
    Endpoint("api/v1/orgs/<slug:org>/tokens/", "POST",
             account_serializers.ApiTokenCreateSerializer, {"name": "ci", "scopes": ["read"]},
             lambda c: "/api/v1/orgs/acme/tokens/",
             {"scopes": ["root"], "expires_at": "2000-01-01T00:00:00Z"}),
    Endpoint("api/v1/orgs/<slug:org>/projects/", "POST",
             ticket_api.ProjectCreateSerializer, {"key": "NEW", "name": "New thing"},
             lambda c: "/api/v1/orgs/acme/projects/",
             {"key": "lower-case", "delivery": "email", "auth_method": "password",
              "repository_url": "https://user:secret@example.com/repo.git",
              "test_command": "pytest -q"}),
    Endpoint("api/v1/orgs/<slug:org>/projects/<str:key>/", "PATCH",
             ticket_api.ProjectSettingsSerializer, {"name": "Renamed"},
             lambda c: "/api/v1/orgs/acme/projects/PAY/",
             {"forge": "bitbucket", "default_branch": "a..b",
              "repository_url": "http://169.254.169.254/repo.git"}),
    Endpoint("api/v1/orgs/<slug:org>/projects/<str:key>/grants/<uuid:membership>/", "PUT",
             ticket_api.ProjectGrantsSerializer, {"grants": ["view"]},
             lambda c: f"/api/v1/orgs/acme/projects/PAY/grants/{_member_id(c)}/",
             {"grants": ["delete"]}),
    Endpoint("api/v1/orgs/<slug:org>/projects/<str:key>/requirements/", "POST",
             ticket_api.RequirementCreateSerializer, {"title": "Invoices", "text": "Round."},
             lambda c: "/api/v1/orgs/acme/projects/PAY/requirements/", {}),
    Endpoint("api/v1/orgs/<slug:org>/endpoints/", "POST", agent_api.EndpointWriteSerializer,
             {"name": "GPU box", "kind": "openai_compatible", "base_url": "http://93.184.215.14/v1",
              "model": "qwen2.5-coder", "role": "coder"},
             lambda c: "/api/v1/orgs/acme/endpoints/",
             {"kind": "gpt", "role": "boss", "base_url": "http://169.254.169.254/",
              "price_input": "-1"}),
]
# Endpoints whose body is an Atomic Ticket spec, or that act on a ticket or requirement in a
# given state, have their bad-input cases beside them.
# Bodiless actions on a project's repository.
COVERED_IN_PROJECT_SETTINGS = {
    "api/v1/orgs/<slug:org>/projects/<str:key>/deploy-key/":
        "tickets/tests/test_api_projects_settings.py",
    "api/v1/orgs/<slug:org>/projects/<str:key>/connection-test/":
        "tickets/tests/test_api_projects_settings.py",
    "api/v1/orgs/<slug:org>/projects/<str:key>/setup-check/": "agents/tests/test_preflight.py",
}
# Partial updates of a model endpoint (every field optional) and its bodiless health check.
COVERED_IN_AGENTS = {
    "api/v1/orgs/<slug:org>/endpoints/<uuid:endpoint>/": "agents/tests/test_endpoints_api.py",
    # Bodiless: a delivery of one of the project's branches, now.
    "api/v1/orgs/<slug:org>/projects/<str:key>/branches/": "agents/tests/test_delivery.py",
}
# A policy's body maps rule names to values of each rule's own type.
COVERED_IN_POLICIES = {
    "api/v1/orgs/<slug:org>/policy/": "policies/tests/test_policy_api.py",
    "api/v1/orgs/<slug:org>/projects/<str:key>/policy/": "policies/tests/test_policy_api.py",
}
IDS = [f"{e.method} {e.route}" for e in WRITE_ENDPOINTS]


def stored(cast: Cast) -> dict[str, list[Any]]:
    """What a bad request must leave untouched (token use times aside)."""
    org = cast.org
    return {
        "memberships": sorted(Membership.objects.for_org(org).values_list("id", "role")),
        "invitations": sorted(Invitation.objects.for_org(org).values_list("id", "revoked_at")),
        "tokens": sorted(ApiToken.objects.for_org(org).values_list("id", "name", "revoked_at")),
        "projects": sorted(Project.objects.for_org(org).values_list("id", "key", "name")),
        "grants": sorted(ProjectUserObjectPermission.objects.filter(
            content_object__organization=org).values_list("id", flat=True)),
        "endpoints": sorted(InferenceEndpoint.objects.for_org(org).values_list("id", "name")),
        "audit": list(AuditEvent.objects.for_org(org).values_list("seq", flat=True)),
    }


def string_fields(endpoint: Endpoint) -> list[str]:
    fields = endpoint.serializer().fields
    return [name for name, field in fields.items()
            if isinstance(field, (serializers.CharField, serializers.ChoiceField,
                                  serializers.DateTimeField))]


def list_fields(endpoint: Endpoint) -> list[str]:
    fields = endpoint.serializer().fields
    return [name for name, field in fields.items() if isinstance(field, serializers.ListField)]


def required_fields(endpoint: Endpoint) -> list[str]:
    return [name for name, field in endpoint.serializer().fields.items() if field.required]


@pytest.fixture
def admin_api(cast: Cast) -> APIClient:
    client = token_client(cast.org, cast.admin, ["admin"])
    client.get("/api/v1/orgs/acme/")  # records the token's first use before any snapshot
    return client


def send(client: APIClient, endpoint: Endpoint, cast: Cast, body: Any) -> Any:
    return client.generic(endpoint.method, endpoint.url(cast), json.dumps(body),
                          content_type="application/json")


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"], error
    # Serializer errors start with the field's name; a service's own sentence names the rule.
    assert error["message"].startswith(field) or "." in error["message"], error["message"]
    assert len(response.content) < 10_000, "the error must not echo the input back"


def check_each(client: APIClient, endpoint: Endpoint, cast: Cast,
               cases: list[tuple[str, dict[str, Any]]]) -> None:
    before = stored(cast)
    assert cases, "no case applies; this endpoint needs its own check"
    for field, body in cases:
        assert_refused(send(client, endpoint, cast, body), field)
    assert stored(cast) == before


# --- Coverage --------------------------------------------------------------------------------

def test_every_api_write_endpoint_is_covered() -> None:
    listed = {(e.route, e.method) for e in WRITE_ENDPOINTS}
    for route in SCOPED:
        if not route.is_api:
            continue
        for method in route.methods:
            if method in SAFE_METHODS or method == "DELETE":
                continue
            if route.route.startswith((*COVERED_ELSEWHERE, *COVERED_IN_AGENTS,
                                       *COVERED_IN_POLICIES, *COVERED_IN_PROJECT_SETTINGS)):
                continue
            assert (route.route, method) in listed, f"{method} /{route.route} has no bad-input case"


# --- Per field -------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=IDS)
def test_nul_bytes_in_any_string_are_refused_naming_the_field(
    endpoint: Endpoint, cast: Cast, admin_api: APIClient
) -> None:
    cases = [(f, {**endpoint.valid, f: "a\x00b"}) for f in string_fields(endpoint)]
    cases += [(f, {**endpoint.valid, f: ["view\x00"]}) for f in list_fields(endpoint)]
    check_each(admin_api, endpoint, cast, cases)


@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=IDS)
def test_a_megabyte_string_is_refused_naming_the_field(
    endpoint: Endpoint, cast: Cast, admin_api: APIClient
) -> None:
    cases = [(f, {**endpoint.valid, f: MEGABYTE}) for f in string_fields(endpoint)]
    cases += [(f, {**endpoint.valid, f: [MEGABYTE]}) for f in list_fields(endpoint)]
    check_each(admin_api, endpoint, cast, cases)


@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=IDS)
def test_wrong_types_are_refused_naming_the_field(
    endpoint: Endpoint, cast: Cast, admin_api: APIClient
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = []
    for field in string_fields(endpoint):
        for wrong in (12345, {"a": "b"}, ["a"], True, None):
            cases.append((field, {**endpoint.valid, field: wrong}))
    for field in list_fields(endpoint):
        for wrong in ("view", 1, {"a": "b"}, None, [1], [{"a": "b"}]):
            cases.append((field, {**endpoint.valid, field: wrong}))
    check_each(admin_api, endpoint, cast, cases)


@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=IDS)
def test_missing_required_fields_are_named(
    endpoint: Endpoint, cast: Cast, admin_api: APIClient
) -> None:
    if not required_fields(endpoint):
        pytest.skip("a partial update has no required fields")
    cases = [(f, {k: v for k, v in endpoint.valid.items() if k != f})
             for f in required_fields(endpoint)]
    check_each(admin_api, endpoint, cast, cases)


@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=IDS)
def test_unknown_values_and_unknown_fields_are_refused(
    endpoint: Endpoint, cast: Cast, admin_api: APIClient
) -> None:
    cases = [(f, {**endpoint.valid, f: value}) for f, value in endpoint.unknown_values.items()]
    cases.append(("surprise", {**endpoint.valid, "surprise": 1}))
    check_each(admin_api, endpoint, cast, cases)


# --- Whole bodies ----------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=IDS)
def test_malformed_bodies_answer_400_or_415_and_change_nothing(
    endpoint: Endpoint, cast: Cast, admin_api: APIClient
) -> None:
    before = stored(cast)
    url = endpoint.url(cast)
    cases = [
        ('{"role": ', "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"just a string"', "application/json", 400),
        ("", "application/json", 400),
        ("\xff\xfe garbage", "application/json", 400),
        (json.dumps(endpoint.valid), "text/plain", 415),
        (json.dumps(endpoint.valid), "application/xml", 415),
    ]
    for body, content_type, status in cases:
        response = admin_api.generic(endpoint.method, url, body, content_type=content_type)
        assert response.status_code == status, (body, content_type, response.content[:200])
        assert response.json()["error"]["message"]
    assert stored(cast) == before


def test_a_token_expiry_in_the_past_or_beyond_a_year_is_refused(
    cast: Cast, admin_api: APIClient
) -> None:
    before = stored(cast)
    url = "/api/v1/orgs/acme/tokens/"
    for when in (timezone.now() - timedelta(minutes=1), timezone.now() + timedelta(days=400)):
        response = admin_api.post(url, {"name": "x", "scopes": ["read"],
                                           "expires_at": when.isoformat()}, format="json")
        assert response.status_code == 400
        assert "expires_at" in response.json()["error"]["details"]
    for nonsense in ("tomorrow", "9999-99-99T00:00:00Z", "0001-01-01T00:00:00-05:00"):
        response = admin_api.post(url, {"name": "x", "scopes": ["read"],
                                           "expires_at": nonsense}, format="json")
        assert response.status_code == 400, (nonsense, response.content[:200])
    assert stored(cast) == before


@pytest.mark.parametrize("query", [{"type": "a\x00b"}, {"actor": "x" * 5000},
                                   {"after_seq": "1e400"}, {"after_seq": "99999999999999999999"},
                                   {"until": "\x00"}, {"page_size": "abc"}, {"cursor": "%%%"}])
def test_bad_audit_log_filters_never_answer_500(cast: Cast, admin_api: APIClient,
                                                query: dict[str, str]) -> None:
    response = admin_api.get("/api/v1/orgs/acme/audit-events/", query)
    assert response.status_code in (200, 400, 404), response.content[:300]
    if response.status_code != 200:
        assert response.json()["error"]["message"]


def test_bad_uuids_and_keys_in_urls_answer_404_not_500(cast: Cast,
                                                       admin_api: APIClient) -> None:
    for url in ("/api/v1/orgs/acme/members/not-a-uuid/", "/api/v1/orgs/acme/projects/%00/",
                "/api/v1/orgs/acme/projects/" + "A" * 3000 + "/"):
        assert admin_api.get(url).status_code == 404, url
    response = admin_api.patch("/api/v1/orgs/acme/members/00000000-0000-0000-0000-0000000000"
                                  "00/", {"role": "member"}, format="json")
    assert response.status_code == 404


# --- Invitation links in the portal ----------------------------------------------------------

@pytest.fixture
def invitee() -> Any:
    return UserFactory(email="invitee@example.test")


def invite(cast: Cast, email: str = "invitee@example.test") -> tuple[Invitation, str]:
    return services.invitation_create(organization=cast.org, email=email, role=Role.MEMBER,
                                      actor=cast.admin)


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def assert_link_refused(client: Client, raw: str, cast: Cast, user: Any, text: str) -> None:
    for method in ("get", "post"):
        response = getattr(client, method)(f"/invitations/{raw}/")
        assert response.status_code in (400, 404), (method, response.status_code)
        assert text in response.content.decode(), (method, response.content[:500])
    assert not Membership.objects.for_org(cast.org).filter(user=user).exists()


def test_an_expired_invitation_link_explains_itself_and_grants_nothing(cast, invitee) -> None:
    invitation, raw = invite(cast)
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    assert_link_refused(browser(invitee), raw, cast, invitee, "may have expired")


def test_a_revoked_invitation_link_explains_itself_and_grants_nothing(cast, invitee) -> None:
    invitation, raw = invite(cast)
    services.invitation_revoke(organization=cast.org, invitation=invitation, actor=cast.admin)
    assert_link_refused(browser(invitee), raw, cast, invitee, "been revoked")


def test_someone_elses_invitation_cannot_be_accepted(cast, invitee) -> None:
    _, raw = invite(cast)
    client = browser(cast.outsider)
    response = client.post(f"/invitations/{raw}/")
    assert response.status_code == 400
    assert "was sent to invitee@example.test" in response.content.decode()
    assert not Membership.objects.for_org(cast.org).filter(user=cast.outsider).exists()
    # The rightful invitee can still use it.
    response = browser(invitee).post(f"/invitations/{raw}/")
    assert response.status_code == 302
    assert Membership.objects.for_org(cast.org).filter(user=invitee).exists()


def test_a_used_invitation_link_does_not_work_twice(cast, invitee) -> None:
    _, raw = invite(cast)
    assert browser(invitee).post(f"/invitations/{raw}/").status_code == 302
    other = UserFactory(email="second@example.test")
    assert_link_refused(browser(other), raw, cast, other, "not valid")


@pytest.mark.parametrize("raw", ["nonsense", "a" * 2000, "%00"])
def test_a_made_up_invitation_link_explains_itself(cast, invitee, raw: str) -> None:
    response = browser(invitee).get(f"/invitations/{raw}/")
    assert response.status_code == 404
    assert "not valid" in response.content.decode()

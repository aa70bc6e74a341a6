"""The organization API as a team's tooling uses it: members, invitations, tokens, audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services, tokens
from accounts.models import ApiToken, Invitation, Membership
from accounts.roles import Role
from haao.audit import seal
from haao.models import AuditEvent
from tests.factories import MembershipFactory
from tests.fixtures import last_event, token_client

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme"


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


# --- Organizations ---------------------------------------------------------------------------

def test_a_user_sees_each_of_their_organizations_with_their_role(cast) -> None:
    MembershipFactory(organization=cast.other_org, user=cast.manager, role=Role.MEMBER)
    response = session_client(cast.manager).get("/api/v1/orgs/")
    assert response.status_code == 200
    rows = {row["slug"]: row["role"] for row in response.json()["results"]}
    assert rows == {"acme": "manager", "globex": "member"}


def test_a_token_sees_only_its_own_organization(cast) -> None:
    MembershipFactory(organization=cast.other_org, user=cast.manager, role=Role.MEMBER)
    client = token_client(cast.org, cast.manager, ["read"])
    slugs = [row["slug"] for row in client.get("/api/v1/orgs/").json()["results"]]
    assert slugs == ["acme"]


def test_the_organization_detail_shows_name_slug_and_your_role(cast) -> None:
    body = token_client(cast.org, cast.member, ["read"]).get(f"{BASE}/").json()
    assert body["name"] == "Acme"
    assert body["slug"] == "acme"
    assert body["role"] == "member"


# --- Members ---------------------------------------------------------------------------------

def test_every_member_can_list_the_members(cast) -> None:
    response = token_client(cast.org, cast.member, ["read"]).get(f"{BASE}/members/")
    assert response.status_code == 200
    emails = {row["email"] for row in response.json()["results"]}
    assert emails == {cast.admin.email, cast.product_owner.email, cast.manager.email,
                      cast.member.email}


def test_an_admin_token_changes_a_role_and_the_change_is_audited(cast) -> None:
    target = cast.membership(cast.member)
    client = token_client(cast.org, cast.admin, ["admin"])
    response = client.patch(f"{BASE}/members/{target.pk}/", {"role": "manager"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["role"] == "manager"
    assert Membership.objects.get(pk=target.pk).role == Role.MANAGER
    event = last_event(cast.org)
    assert event.type == "membership.role_changed"
    assert event.actor_user == cast.admin


def test_a_write_token_cannot_change_roles(cast) -> None:
    target = cast.membership(cast.member)
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.patch(f"{BASE}/members/{target.pk}/", {"role": "admin"}, format="json")
    assert response.status_code == 403
    assert "admin" in response.json()["error"]["message"]
    assert Membership.objects.get(pk=target.pk).role == Role.MEMBER


def test_removing_the_last_admin_answers_409_with_the_reason(cast) -> None:
    admin = cast.membership(cast.admin)
    response = token_client(cast.org, cast.admin, ["admin"]).delete(f"{BASE}/members/{admin.pk}/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_admin"
    assert "last admin" in response.json()["error"]["message"]
    assert Membership.objects.filter(pk=admin.pk).exists()


def test_removing_a_member_answers_204_and_they_lose_access(cast) -> None:
    member_client = token_client(cast.org, cast.member, ["read"])
    target = cast.membership(cast.member)
    response = token_client(cast.org, cast.admin, ["admin"]).delete(f"{BASE}/members/{target.pk}/")
    assert response.status_code == 204
    assert member_client.get(f"{BASE}/").status_code == 401  # their token was revoked


def test_a_member_of_another_organization_cannot_be_changed_through_this_one(cast) -> None:
    foreign = Membership.objects.get(organization=cast.other_org, user=cast.outsider)
    client = token_client(cast.org, cast.admin, ["admin"])
    response = client.patch(f"{BASE}/members/{foreign.pk}/", {"role": "member"}, format="json")
    assert response.status_code == 404
    assert Membership.objects.get(pk=foreign.pk).role == Role.ADMIN


# --- Invitations -----------------------------------------------------------------------------

def test_creating_an_invitation_returns_its_link_once(cast) -> None:
    client = token_client(cast.org, cast.admin, ["admin"])
    response = client.post(f"{BASE}/invitations/", {"email": "New@Example.test", "role": "member"},
                           format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["email"] == "new@example.test"
    assert body["status"] == "pending"
    assert body["url"].endswith(f"/invitations/{body['token']}/")
    invitation = Invitation.objects.get(pk=body["id"])
    assert invitation.token_hash == tokens.digest(body["token"])
    listed = client.get(f"{BASE}/invitations/").json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    assert "token" not in listed[0] and "url" not in listed[0]


def test_an_invitation_made_through_the_api_is_mailed_after_commit(
        cast, django_capture_on_commit_callbacks) -> None:
    from django.core import mail

    client = token_client(cast.org, cast.admin, ["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        body = client.post(f"{BASE}/invitations/", {"email": "mailed@example.test",
                                                    "role": "member"}, format="json").json()
    assert [m.to for m in mail.outbox] == [["mailed@example.test"]]
    assert body["url"] in mail.outbox[0].body


def test_inviting_an_existing_member_answers_409(cast) -> None:
    client = token_client(cast.org, cast.admin, ["admin"])
    response = client.post(f"{BASE}/invitations/", {"email": cast.member.email, "role": "member"},
                           format="json")
    assert response.status_code == 409
    assert "member already" in response.json()["error"]["message"]


def test_revoking_an_invitation_stops_its_link_and_a_second_revoke_is_409(cast) -> None:
    invitation, _ = services.invitation_create(organization=cast.org, email="x@example.test",
                                               role=Role.MEMBER, actor=cast.admin)
    client = token_client(cast.org, cast.admin, ["admin"])
    assert client.delete(f"{BASE}/invitations/{invitation.pk}/").status_code == 204
    assert Invitation.objects.get(pk=invitation.pk).status == "revoked"
    assert last_event(cast.org).type == "invitation.revoked"
    assert client.delete(f"{BASE}/invitations/{invitation.pk}/").status_code == 409


def test_a_manager_cannot_see_invitations(cast) -> None:
    response = token_client(cast.org, cast.manager, ["admin"]).get(f"{BASE}/invitations/")
    assert response.status_code == 403


# --- Tokens ----------------------------------------------------------------------------------

def test_creating_a_token_returns_the_plaintext_once_and_it_works(cast) -> None:
    client = session_client(cast.member)
    response = client.post(f"{BASE}/tokens/", {"name": "ci", "scopes": ["read"]}, format="json")
    assert response.status_code == 201, response.json()
    raw = response.json()["token"]
    assert raw.startswith("haao_") and tokens.looks_like_api_token(raw)
    listed = client.get(f"{BASE}/tokens/").json()["results"]
    assert [row["name"] for row in listed] == ["ci"]
    assert "token" not in listed[0]
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert fresh.get(f"{BASE}/").status_code == 200


def test_a_token_cannot_create_a_token_with_more_scopes_than_itself(cast) -> None:
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.post(f"{BASE}/tokens/", {"name": "wider", "scopes": ["admin"]},
                           format="json")
    assert response.status_code == 403
    assert "more scopes" in response.json()["error"]["message"]
    assert not ApiToken.objects.filter(name="wider").exists()
    narrower = client.post(f"{BASE}/tokens/", {"name": "narrow", "scopes": ["read"]},
                           format="json")
    assert narrower.status_code == 201


def test_members_see_only_their_own_tokens_and_admins_see_all(cast) -> None:
    for user in (cast.member, cast.manager):
        services.api_token_create(organization=cast.org, user=user, name=f"t-{user.pk}",
                                  scopes=["read"], expires_at=timezone.now() + timedelta(days=1))
    mine = session_client(cast.member).get(f"{BASE}/tokens/").json()["results"]
    assert {row["user"] for row in mine} == {cast.member.email}
    everyone = session_client(cast.admin).get(f"{BASE}/tokens/").json()["results"]
    assert {row["user"] for row in everyone} == {cast.member.email, cast.manager.email}


def test_a_member_cannot_revoke_someone_elses_token_but_an_admin_can(cast) -> None:
    token, _ = services.api_token_create(organization=cast.org, user=cast.manager, name="m",
                                         scopes=["read"],
                                         expires_at=timezone.now() + timedelta(days=1))
    assert session_client(cast.member).delete(f"{BASE}/tokens/{token.pk}/").status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    assert session_client(cast.admin).delete(f"{BASE}/tokens/{token.pk}/").status_code == 204
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert last_event(cast.org).type == "api_token.revoked"


# --- Audit log -------------------------------------------------------------------------------

def test_the_audit_log_filters_by_type_actor_and_sequence(cast) -> None:
    services.membership_set_role(organization=cast.org, membership=cast.membership(cast.member),
                                 role=Role.MANAGER, actor=cast.admin)
    services.invitation_create(organization=cast.org, email="a@example.test", role=Role.MEMBER,
                               actor=cast.admin)
    client = token_client(cast.org, cast.manager, ["read"])
    seal(cast.org.pk)  # the writers' commits seal their events (the token's too)
    by_type = client.get(f"{BASE}/audit-events/", {"type": "membership.role_changed"}).json()
    assert [row["type"] for row in by_type["results"]] == ["membership.role_changed"]
    by_actor = client.get(f"{BASE}/audit-events/", {"actor": cast.admin.email.upper()}).json()
    assert {row["actor_label"] for row in by_actor["results"]} == {cast.admin.email}
    head = AuditEvent.objects.for_org(cast.org).order_by("-seq").first().seq
    following = client.get(f"{BASE}/audit-events/", {"after_seq": head - 2}).json()["results"]
    assert [row["seq"] for row in following] == [head - 1, head]


def test_the_audit_log_filters_by_time(cast) -> None:
    services.invitation_create(organization=cast.org, email="a@example.test", role=Role.MEMBER,
                               actor=cast.admin)
    seal(cast.org.pk)  # the writers' commits seal their events
    client = token_client(cast.org, cast.manager, ["read"])
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert client.get(f"{BASE}/audit-events/", {"since": future}).json()["results"] == []
    assert client.get(f"{BASE}/audit-events/", {"until": future}).json()["results"]


def test_the_audit_log_pages_with_a_cursor(cast) -> None:
    for index in range(5):
        services.invitation_create(organization=cast.org, email=f"p{index}@example.test",
                                   role=Role.MEMBER, actor=cast.admin)
    client = token_client(cast.org, cast.admin, ["read"])
    seal(cast.org.pk)  # the writers' commits seal their events (the token's too)
    seen: list[int] = []
    url: str | None = f"{BASE}/audit-events/?page_size=2"
    while url:
        page = client.get(url).json()
        seen += [row["seq"] for row in page["results"]]
        url = page["next"]
    total = AuditEvent.objects.for_org(cast.org).count()
    assert seen == list(range(total, 0, -1))


def test_a_bad_audit_filter_answers_400_naming_it(cast) -> None:
    client = token_client(cast.org, cast.admin, ["read"])
    response = client.get(f"{BASE}/audit-events/", {"since": "yesterday"})
    assert response.status_code == 400
    assert "since" in response.json()["error"]["details"]
    response = client.get(f"{BASE}/audit-events/", {"after_seq": "-1"})
    assert response.status_code == 400
    assert "after_seq" in response.json()["error"]["details"]


@pytest.mark.parametrize(("name", "value"), [
    ("since", "99999-01-01"), ("since", "9999-12-31T23:59:59-12:00"),
    ("until", "0001-01-01T00:00:00+14:00"), ("until", "9999-12-31T23:59:59-23:59"),
])
def test_an_audit_time_out_of_range_answers_400_naming_it(cast, name, value) -> None:
    client = token_client(cast.org, cast.admin, ["read"])
    response = client.get(f"{BASE}/audit-events/", {name: value})
    assert response.status_code == 400
    assert name in response.json()["error"]["details"]
    assert response.json()["error"]["message"].startswith(f"{name}: ")


def test_a_member_cannot_read_the_audit_log(cast) -> None:
    response = token_client(cast.org, cast.member, ["read"]).get(f"{BASE}/audit-events/")
    assert response.status_code == 403


def test_audit_time_filters_accept_any_offset_and_compare_in_utc(cast) -> None:
    from tests.fixtures import token_client

    client = token_client(cast.org, cast.admin, ["read"])
    seal(cast.org.pk)  # the writers' commits seal their events (the token's too)
    response = client.get("/api/v1/orgs/acme/audit-events/",
                          {"since": "1883-10-22T00:21:10-22:52"})
    assert response.status_code == 200
    assert len(response.json()["results"]) >= 1  # every event is after 1883


def test_a_token_made_with_a_token_expires_no_later_and_is_revoked_with_it(cast) -> None:
    parent, parent_raw = services.api_token_create(
        organization=cast.org, user=cast.admin, name="parent", scopes=["write"],
        expires_at=timezone.now() + timedelta(days=2))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {parent_raw}")
    later = (parent.expires_at + timedelta(days=30)).isoformat()
    refused = client.post(f"{BASE}/tokens/", {"name": "outliving", "scopes": ["read"],
                                              "expires_at": later}, format="json")
    assert refused.status_code == 400
    assert "expires_at" in refused.json()["error"]["details"]
    child = client.post(f"{BASE}/tokens/", {"name": "child", "scopes": ["write"]},
                        format="json")
    assert child.status_code == 201, child.content
    assert ApiToken.objects.get(name="child").expires_at <= parent.expires_at
    grandchild_client = APIClient()
    grandchild_client.credentials(HTTP_AUTHORIZATION=f"Bearer {child.json()['token']}")
    grandchild = grandchild_client.post(f"{BASE}/tokens/", {"name": "grandchild",
                                                           "scopes": ["read"]}, format="json")
    assert grandchild.status_code == 201
    services.api_token_revoke(organization=cast.org, token=parent, actor=cast.admin)
    for raw in (child.json()["token"], grandchild.json()["token"]):
        after = APIClient()
        after.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert after.get(f"{BASE}/").status_code == 401
    assert AuditEvent.objects.filter(type="api_token.revoked").count() == 3

"""Invitations page: the link is shown once, mailed, works for the invited address only."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from accounts import tokens
from accounts.models import Invitation, Membership
from accounts.roles import Role
from tests.factories import UserFactory
from tests.fixtures import last_event


def invite(client: Client, email: str, role: str = "member"):
    return client.post("/o/acme/admin/invitations/", {"email": email, "role": role})


def link_in(body: str) -> str:
    found = re.findall(r'value="(http[^"]+/invitations/[^"]+/)"', body)
    assert len(found) == 1, found
    return found[0]


def test_creating_an_invitation_shows_the_link_once_and_mails_it(
        cast, admin_portal, settings, django_capture_on_commit_callbacks):
    settings.BASE_URL = "https://haao.example.com"
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(admin_portal, "New.Person@Example.com", "product_owner")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    link = link_in(body)
    assert link.startswith("https://haao.example.com/invitations/")
    assert 'data-copy="#invitation-link"' in body
    invitation = Invitation.objects.get(organization=cast.org)
    raw = link.rstrip("/").rsplit("/", 1)[1]
    assert invitation.token_hash == tokens.digest(raw)
    assert invitation.email == "new.person@example.com" and invitation.role == Role.PRODUCT_OWNER

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.com"]
    assert link in mail.outbox[0].body and "Acme" in mail.outbox[0].subject

    reloaded = admin_portal.get("/o/acme/admin/invitations/").content.decode()
    assert raw not in reloaded
    assert "new.person@example.com" in reloaded and "Pending" in reloaded
    event = last_event(cast.org)
    assert event.type == "invitation.created" and raw not in str(event.data)


def test_the_link_works_for_the_invited_email_only(cast, admin_portal):
    link = link_in(invite(admin_portal, "invitee@example.com", "manager").content.decode())
    path = "/" + link.split("/", 3)[3]

    stranger = Client()
    stranger.force_login(cast.member)
    refused = stranger.post(path)
    assert refused.status_code == 400
    assert "was sent to invitee@example.com" in refused.content.decode()

    invitee_user = UserFactory(email="invitee@example.com")
    invitee = Client()
    invitee.force_login(invitee_user)
    assert invitee.get(path).status_code == 200
    joined = invitee.post(path)
    assert joined.status_code == 302 and joined["Location"] == "/o/acme/"
    assert Membership.objects.get(organization=cast.org, user=invitee_user).role == Role.MANAGER
    assert invitee.post(path).status_code == 404  # single use
    assert "Accepted" in admin_portal.get("/o/acme/admin/invitations/").content.decode()


def test_a_revoked_invitation_link_stops_working(cast, admin_portal):
    link = link_in(invite(admin_portal, "late@example.com").content.decode())
    invitation = Invitation.objects.get(organization=cast.org, email="late@example.com")
    response = admin_portal.post(f"/o/acme/admin/invitations/{invitation.pk}/revoke/",
                                 follow=True)
    body = response.content.decode()
    assert "The invitation for late@example.com was revoked." in body and "Revoked" in body
    assert Invitation.objects.get(pk=invitation.pk).revoked_at is not None
    user = UserFactory(email="late@example.com")
    client = Client()
    client.force_login(user)
    assert client.get("/" + link.split("/", 3)[3]).status_code == 404

    again = admin_portal.post(f"/o/acme/admin/invitations/{invitation.pk}/revoke/", follow=True)
    assert "already used or revoked" in again.content.decode()


@pytest.mark.parametrize(("data", "message"), [
    ({"email": "not-an-email", "role": "member"}, "Enter a valid email address."),
    ({"email": "a@example.com", "role": "owner"}, "Select a valid choice."),
    ({"email": "a\x00b@example.com", "role": "member"}, "Null characters are not allowed."),
    ({"email": "x" * 1_000_000 + "@example.com", "role": "member"}, "at most 254 characters"),
    ({"role": "member"}, "This field is required."),
])
def test_bad_invitation_input_is_a_form_error_and_nothing_is_created(
        cast, admin_portal, data, message):
    response = admin_portal.post("/o/acme/admin/invitations/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Invitation.objects.for_org(cast.org).exists()


def test_inviting_an_existing_member_names_the_problem_on_the_email_field(cast, admin_portal):
    response = invite(admin_portal, cast.member.email)
    assert response.status_code == 409
    body = response.content.decode()
    assert f"{cast.member.email} is a member already." in body
    assert 'id="id_email_error"' in body
    assert not Invitation.objects.for_org(cast.org).exists()


def test_the_empty_state_explains_what_the_list_will_show(cast, admin_portal):
    body = admin_portal.get("/o/acme/admin/invitations/").content.decode()
    assert "No invitations yet" in body
    assert '<label for="id_email"' in body and '<label for="id_role"' in body

"""Organizations, memberships, invitations and tokens: the rules a user relies on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services, tokens
from accounts.models import ApiToken, Invitation, Membership
from accounts.roles import Role
from haao.errors import ApplicationError, Conflict, NotFound
from tests.factories import UserFactory
from tests.fixtures import last_event


def test_creating_an_organization_makes_the_creator_its_admin(db) -> None:
    user = UserFactory()
    org = services.organization_create(name="Initech", slug="initech", creator=user)
    assert Membership.objects.get(organization=org, user=user).role == Role.ADMIN
    assert last_event(org).type == "membership.created"


def test_reserved_and_taken_slugs_are_refused(cast) -> None:
    with pytest.raises(ApplicationError, match="reserved"):
        services.organization_create(name="x", slug="api", creator=cast.admin)
    with pytest.raises(Conflict, match="exists already"):
        services.organization_create(name="x", slug="acme", creator=cast.admin)


def test_the_last_admin_cannot_be_demoted_or_removed(cast) -> None:
    admin = cast.membership(cast.admin)
    with pytest.raises(Conflict, match="at least one admin"):
        services.membership_set_role(organization=cast.org, membership=admin, role=Role.MEMBER,
                                     actor=cast.admin)
    with pytest.raises(Conflict, match="last admin"):
        services.membership_remove(organization=cast.org, membership=admin, actor=cast.admin)
    assert Membership.objects.get(pk=admin.pk).role == Role.ADMIN


def test_role_change_is_audited_with_before_and_after(cast) -> None:
    member = cast.membership(cast.member)
    services.membership_set_role(organization=cast.org, membership=member, role=Role.MANAGER,
                                 actor=cast.admin)
    event = last_event(cast.org)
    assert event.type == "membership.role_changed"
    assert event.data == {"before": "member", "after": "manager"}
    assert event.actor_user == cast.admin


def test_removing_a_member_revokes_their_tokens(cast) -> None:
    token, _ = services.api_token_create(
        organization=cast.org, user=cast.member, name="ci", scopes=["read"],
        expires_at=timezone.now() + timedelta(days=1))
    services.membership_remove(organization=cast.org, membership=cast.membership(cast.member),
                               actor=cast.admin)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert not Membership.objects.filter(organization=cast.org, user=cast.member).exists()


def test_an_invitation_grants_its_role_in_its_organization_once(cast) -> None:
    invitee = UserFactory(email="new@acme.test")
    invitation, raw = services.invitation_create(organization=cast.org, email="new@acme.test",
                                                 role=Role.PRODUCT_OWNER, actor=cast.admin)
    membership = services.invitation_accept(raw_token=raw, user=invitee)
    assert (membership.organization, membership.role) == (cast.org, Role.PRODUCT_OWNER)
    assert not Membership.objects.filter(organization=cast.other_org, user=invitee).exists()
    with pytest.raises(NotFound, match="not valid"):
        services.invitation_accept(raw_token=raw, user=invitee)
    assert Invitation.objects.get(pk=invitation.pk).accepted_by == invitee


def test_expired_revoked_and_unknown_invitations_are_refused_alike(cast) -> None:
    invitee = UserFactory(email="late@acme.test")
    _, raw_expired = services.invitation_create(
        organization=cast.org, email=invitee.email, role=Role.MEMBER, actor=cast.admin,
        ttl=timedelta(seconds=-1))
    revoked, raw_revoked = services.invitation_create(
        organization=cast.org, email=invitee.email, role=Role.ADMIN, actor=cast.admin)
    services.invitation_revoke(organization=cast.org, invitation=revoked, actor=cast.admin)
    for raw in (raw_expired, raw_revoked, "made-up-token"):
        with pytest.raises(NotFound, match="not valid"):
            services.invitation_accept(raw_token=raw, user=invitee)
    assert not Membership.objects.filter(user=invitee).exists()


def test_an_invitation_only_works_for_the_invited_email(cast) -> None:
    _, raw = services.invitation_create(organization=cast.org, email="right@acme.test",
                                        role=Role.ADMIN, actor=cast.admin)
    with pytest.raises(ApplicationError, match=r"sent to right@acme\.test"):
        services.invitation_accept(raw_token=raw, user=cast.outsider)
    assert not Membership.objects.filter(organization=cast.org, user=cast.outsider).exists()


def test_api_tokens_are_shown_once_and_stored_hashed(cast) -> None:
    token, raw = services.api_token_create(
        organization=cast.org, user=cast.member, name="ci", scopes=["read", "write"],
        expires_at=timezone.now() + timedelta(days=30))
    assert raw.startswith("haao_") and tokens.looks_like_api_token(raw)
    assert token.token_hash == tokens.digest(raw) and raw not in str(token.__dict__)
    assert token.prefix == raw[:11]
    assert last_event(cast.org).type == "api_token.created"


def test_a_token_with_one_wrong_character_fails_its_checksum() -> None:
    raw = tokens.new_api_token()
    flipped = raw[:10] + ("A" if raw[10] != "A" else "B") + raw[11:]
    assert not tokens.looks_like_api_token(flipped)


@pytest.mark.parametrize("scopes,expires,message", [
    ([], timedelta(days=1), "Choose scopes"),
    (["root"], timedelta(days=1), "unknown: root"),
    (["read"], timedelta(days=-1), "in the future"),
    (["read"], timedelta(days=400), "at most one year"),
])
def test_bad_token_requests_are_refused_and_nothing_is_stored(cast, scopes, expires,
                                                               message) -> None:
    with pytest.raises(ApplicationError, match=message):
        services.api_token_create(organization=cast.org, user=cast.member, name="x",
                                  scopes=scopes, expires_at=timezone.now() + expires)
    assert not ApiToken.objects.exists()


def test_a_token_cannot_be_made_for_an_organization_the_user_is_not_in(cast) -> None:
    with pytest.raises(NotFound):
        services.api_token_create(organization=cast.other_org, user=cast.member, name="x",
                                  scopes=["read"], expires_at=timezone.now() + timedelta(days=1))

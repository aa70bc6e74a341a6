"""An organization that requires SSO: its members cannot sign in with a password."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from django.test import Client

from accounts import services
from accounts.tests.domains import verify_domain
from tests.factories import PASSWORD, MembershipFactory


@pytest.fixture
def client() -> Client:
    return Client(HTTP_HOST="testserver")


@pytest.fixture
def sso_required(cast):
    services.sso_connection_save(
        organization=cast.org, actor=cast.admin,
        fields={"protocol": "oidc", "oidc_issuer": "https://login.acme.test",
                "oidc_client_id": "haao"}, client_secret="s3cret",
    )
    verify_domain(cast.org, "acme.test", cast.admin)
    services.organization_set_sso_policy(organization=cast.org, actor=cast.admin,
                                         sso_required=True, break_glass_user=cast.admin)
    return cast.org


def password_login(client: Client, email: str):
    return client.post("/accounts/login/", {"login": email, "password": PASSWORD})


def test_a_member_is_refused_password_sign_in_and_sent_to_sso(client, cast, sso_required):
    response = password_login(client, cast.member.email)

    assert response.status_code == 403
    assert b"Acme" in response.content and b"requires" in response.content
    assert b'href="/sso/"' in response.content
    assert client.get("/o/acme/").status_code == 302  # still signed out


def test_the_break_glass_admin_may_still_sign_in_with_a_password(client, cast, sso_required):
    response = password_login(client, cast.admin.email)

    assert response.status_code == 302
    assert client.get("/o/acme/").status_code == 200


def test_a_wrong_password_gets_the_usual_error_not_the_sso_notice(client, cast, sso_required):
    response = client.post("/accounts/login/", {"login": cast.member.email, "password": "nope"})

    assert response.status_code == 200
    assert b"requires" not in response.content


def test_membership_in_any_organization_that_requires_sso_is_enough_to_refuse(
    client, cast, sso_required
):
    # Admin of Globex (no SSO) and a plain member of Acme (SSO required).
    MembershipFactory(organization=cast.org, user=cast.outsider)

    response = password_login(client, cast.outsider.email)

    assert response.status_code == 403
    assert b"Acme" in response.content


def test_members_of_organizations_without_the_policy_sign_in_as_before(client, cast):
    response = password_login(client, cast.member.email)

    assert response.status_code == 302


def test_the_refusal_comes_before_the_two_factor_step(client, cast, sso_required):
    Authenticator.objects.create(user=cast.member, type=Authenticator.Type.TOTP,
                                 data={"secret": "unused"})

    response = password_login(client, cast.member.email)

    assert response.status_code == 403
    assert b"requires" in response.content
    assert client.get("/accounts/2fa/authenticate/").status_code != 200

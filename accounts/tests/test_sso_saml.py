"""SAML 2.0 sign-in through an organization's identity provider, with signed assertions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from allauth.socialaccount.models import SocialAccount
from django.test import Client

from accounts import services
from accounts.models import Membership, User
from accounts.roles import Role
from accounts.sso.providers import saml_sp_entity_id
from accounts.tests.domains import verify_domain
from haao.models import AuditEvent
from tests.saml_idp import SamlIdP

ACS = "http://testserver/accounts/saml/acme/acs/"



@pytest.fixture
def client() -> Client:
    # Browsers always send Host; allauth's SAML views read it.
    return Client(HTTP_HOST="testserver")


@pytest.fixture(scope="module")
def idp() -> SamlIdP:
    return SamlIdP.create()


@pytest.fixture
def saml_org(cast, idp):
    services.sso_connection_save(
        organization=cast.org, actor=cast.admin,
        fields={"protocol": "saml", "saml_idp_entity_id": idp.entity_id,
                "saml_sso_url": idp.sso_url, "saml_x509_cert": idp.certificate_body,
                "email_domains": ["acme.test"], "default_role": Role.PRODUCT_OWNER},
    )
    verify_domain(cast.org, "acme.test", cast.admin)
    return cast.org


def start_login(client: Client) -> str:
    """Start an SP-initiated login as /sso/ does; the AuthnRequest ID the IdP answers to."""
    response = client.post("/sso/", {"identifier": "acme"})
    assert response.status_code == 302
    assert response["Location"].startswith("https://idp.test/saml/sso?SAMLRequest=")
    return SamlIdP.request_id_from(response["Location"])


def post_response(client: Client, saml_response: str):
    return client.post("/accounts/saml/acme/acs/", {"SAMLResponse": saml_response,
                                                    "RelayState": ""}, follow=True)


def test_a_correctly_signed_assertion_signs_a_new_person_into_the_organization(
    client, saml_org, idp
):
    request_id = start_login(client)
    response = post_response(client, idp.response(
        acs_url=ACS, audience=saml_sp_entity_id("acme"), in_response_to=request_id,
        email="ann@acme.test", given_name="Ann", surname="Lee"))

    assert response.redirect_chain[-1][0] == "/o/acme/"
    user = User.objects.get(email="ann@acme.test")
    assert response.wsgi_request.user == user
    assert user.name == "Ann Lee"
    assert not user.has_usable_password()
    assert Membership.objects.get(organization=saml_org, user=user).role == Role.PRODUCT_OWNER
    event = AuditEvent.objects.for_org(saml_org).get(type="sso.login")
    assert event.actor_user == user and event.data == {"protocol": "saml"}
    assert AuditEvent.objects.for_org(saml_org).filter(
        type="membership.created", target_label="ann@acme.test").exists()


def test_an_existing_member_is_signed_into_their_own_account(client, cast, saml_org, idp):
    member = cast.member
    verify_domain(saml_org, member.email.rpartition("@")[2], cast.admin)
    request_id = start_login(client)
    response = post_response(client, idp.response(
        acs_url=ACS, audience=saml_sp_entity_id("acme"), in_response_to=request_id,
        email=member.email.upper()))

    assert response.wsgi_request.user == member
    assert SocialAccount.objects.get(user=member).provider == "saml-acme"
    assert cast.membership(member).role == Role.MEMBER  # the default role is for newcomers


@pytest.mark.parametrize(("case", "reason"), [
    ("tampered", "Signature validation failed"),
    ("wrong_audience", "is not a valid audience"),
    ("expired", "expired"),
    ("untrusted_key", "Signature validation failed"),
])
def test_an_invalid_assertion_is_refused_and_creates_nothing(
    client, saml_org, idp, caplog, case, reason
):
    request_id = start_login(client)
    signer = SamlIdP.create(entity_id=idp.entity_id) if case == "untrusted_key" else idp
    saml_response = signer.response(
        acs_url=ACS,
        audience="https://evil.test/sp" if case == "wrong_audience" else saml_sp_entity_id("acme"),
        in_response_to=request_id, email="eve@acme.test",
        now=datetime.now(UTC) - timedelta(hours=2) if case == "expired" else None,
        tamper=case == "tampered",
    )
    users_before = User.objects.count()
    response = post_response(client, saml_response)

    assert not response.wsgi_request.user.is_authenticated
    assert b"Third-Party Login Failure" in response.content
    assert reason in caplog.text
    assert User.objects.count() == users_before
    assert not Membership.objects.filter(user__email__endswith="@acme.test",
                                         user__email__startswith="eve").exists()
    assert not AuditEvent.objects.for_org(saml_org).filter(type="sso.login").exists()


def test_an_assertion_nobody_asked_for_is_refused(client, saml_org, idp):
    response = post_response(client, idp.response(
        acs_url=ACS, audience=saml_sp_entity_id("acme"), in_response_to=None,
        email="ivy@acme.test"))

    assert not response.wsgi_request.user.is_authenticated
    assert not User.objects.filter(email="ivy@acme.test").exists()


def test_the_same_assertion_cannot_be_posted_twice(client, saml_org, idp):
    request_id = start_login(client)
    saml_response = idp.response(acs_url=ACS, audience=saml_sp_entity_id("acme"),
                                 in_response_to=request_id, email="ann@acme.test")
    assert post_response(client, saml_response).wsgi_request.user.is_authenticated
    client.logout()

    replay = post_response(client, saml_response)

    assert not replay.wsgi_request.user.is_authenticated
    assert AuditEvent.objects.for_org(saml_org).filter(type="sso.login").count() == 1


def test_the_idp_cannot_sign_in_an_account_of_another_organization(client, cast, saml_org, idp):
    outsider = cast.outsider
    password_before = outsider.password
    request_id = start_login(client)
    response = post_response(client, idp.response(
        acs_url=ACS, audience=saml_sp_entity_id("acme"), in_response_to=request_id,
        email=outsider.email))

    assert response.status_code == 403
    assert f"not a member of {cast.org.name}".encode() in response.content
    assert not response.wsgi_request.user.is_authenticated
    outsider.refresh_from_db()
    assert outsider.password == password_before
    assert not SocialAccount.objects.filter(user=outsider).exists()
    assert not Membership.objects.filter(organization=saml_org, user=outsider).exists()
    assert AuditEvent.objects.for_org(saml_org).get(type="sso.login_refused").data[
        "reason"] == "account of another"


def test_a_disabled_connection_does_not_accept_assertions(client, cast, saml_org, idp):
    request_id = start_login(client)
    services.sso_connection_save(organization=saml_org, actor=cast.admin,
                                 fields={"enabled": False})
    response = client.post("/accounts/saml/acme/acs/", {"SAMLResponse": idp.response(
        acs_url=ACS, audience=saml_sp_entity_id("acme"), in_response_to=request_id,
        email="ann@acme.test")}, follow=True)

    assert response.status_code == 404
    assert not User.objects.filter(email="ann@acme.test").exists()

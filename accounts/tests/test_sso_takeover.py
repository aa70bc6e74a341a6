"""One organization's identity provider cannot reach accounts or sessions of another.

The takeover these tests close: Globex's IdP created newhire@acme.test, Acme invited that
address, the real person reset the password, and Globex's IdP then signed in as them, held
their Acme membership and minted an Acme API token.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from allauth.socialaccount.models import SocialAccount
from django.test import Client

from accounts import services
from accounts.models import ApiToken, Membership, Organization, User
from accounts.roles import Role
from accounts.sso.providers import saml_sp_entity_id
from accounts.tests.domains import verify_domain
from haao.models import AuditEvent
from tests.factories import MembershipFactory, UserFactory
from tests.saml_idp import SamlIdP

NEWHIRE = "newhire@acme.test"


@pytest.fixture
def client() -> Client:
    return Client(HTTP_HOST="testserver")


@pytest.fixture(scope="module")
def acme_idp() -> SamlIdP:
    return SamlIdP.create(entity_id="https://idp.acme.test/saml",
                          sso_url="https://idp.acme.test/sso")


@pytest.fixture(scope="module")
def globex_idp() -> SamlIdP:
    return SamlIdP.create(entity_id="https://idp.globex.test/saml",
                          sso_url="https://idp.globex.test/sso")


def connect_saml(org: Organization, actor: User, idp: SamlIdP) -> None:
    services.sso_connection_save(
        organization=org, actor=actor,
        fields={"protocol": "saml", "saml_idp_entity_id": idp.entity_id,
                "saml_sso_url": idp.sso_url, "saml_x509_cert": idp.certificate_body},
    )


@pytest.fixture
def acme(cast, acme_idp) -> Organization:
    connect_saml(cast.org, cast.admin, acme_idp)
    verify_domain(cast.org, "acme.test", cast.admin)
    return cast.org


@pytest.fixture
def globex(cast, globex_idp) -> Organization:
    """Globex's IdP, configured with no email domain listed at all (it used to accept any)."""
    connect_saml(cast.other_org, cast.outsider, globex_idp)
    verify_domain(cast.other_org, "globex.test", cast.outsider)
    return cast.other_org


def sso_sign_in(client: Client, org: Organization, idp: SamlIdP, email: str):
    """The whole SP-initiated SAML sign-in through `org`'s IdP, asserting `email`."""
    started = client.post("/sso/", {"identifier": org.slug})
    assert started.status_code == 302
    request_id = SamlIdP.request_id_from(started["Location"])
    acs = f"http://testserver/accounts/saml/{org.slug}/acs/"
    return client.post(f"/accounts/saml/{org.slug}/acs/", {
        "SAMLResponse": idp.response(acs_url=acs, audience=saml_sp_entity_id(org.slug),
                                     in_response_to=request_id, email=email),
        "RelayState": ""}, follow=True)


def refusal(org: Organization) -> AuditEvent:
    return AuditEvent.objects.for_org(org).filter(type="sso.login_refused").latest("seq")


def test_another_organizations_idp_cannot_create_an_account_in_a_verified_domain(
    client, acme, globex, globex_idp
):
    response = sso_sign_in(client, globex, globex_idp, NEWHIRE)

    assert response.status_code == 403
    assert b"acme.test is not one of them" in response.content
    assert not response.wsgi_request.user.is_authenticated
    assert not User.objects.filter(email=NEWHIRE).exists()
    assert refusal(globex).data["reason"] == "email domain not verified"


def test_an_idp_cannot_create_accounts_at_a_domain_nobody_verified(
    client, cast, globex, globex_idp
):
    response = sso_sign_in(client, globex, globex_idp, "someone@unclaimed.test")

    assert response.status_code == 403
    assert not User.objects.filter(email="someone@unclaimed.test").exists()


def test_the_takeover_chain_is_closed(client, cast, acme, globex, globex_idp):
    # The state the old code let Globex's IdP build: an account it created, linked to its IdP,
    # that Acme then invited and the real person took over with a password reset.
    newhire = UserFactory(email=NEWHIRE)
    MembershipFactory(organization=globex, user=newhire, role=Role.MEMBER)
    SocialAccount.objects.create(user=newhire, provider="saml-globex", uid=NEWHIRE)
    MembershipFactory(organization=acme, user=newhire, role=Role.ADMIN)

    response = sso_sign_in(client, globex, globex_idp, NEWHIRE)

    assert response.status_code == 403
    assert not response.wsgi_request.user.is_authenticated
    assert refusal(globex).data["reason"] == "email domain not verified"
    assert client.get("/o/acme/").status_code == 302
    assert client.get("/o/acme/").url.startswith("/accounts/login/")
    minted = client.post("/api/v1/orgs/acme/tokens/", {"name": "x", "scopes": ["admin"]},
                         content_type="application/json")
    assert minted.status_code in (401, 403)
    assert not ApiToken.objects.filter(user=newhire).exists()
    assert not AuditEvent.objects.filter(type="sso.login").exists()


def test_an_idp_cannot_link_an_existing_account_of_another_domain_by_email(
    client, cast, acme, globex, globex_idp
):
    # A member of both organizations, at Acme's domain, never linked to Globex's IdP.
    person = UserFactory(email="pat@acme.test")
    MembershipFactory(organization=acme, user=person)
    MembershipFactory(organization=globex, user=person)

    response = sso_sign_in(client, globex, globex_idp, person.email)

    assert response.status_code == 403
    assert not response.wsgi_request.user.is_authenticated
    assert not SocialAccount.objects.filter(user=person).exists()


def test_an_organization_without_a_verified_domain_signs_nobody_in(
    client, cast, globex_idp
):
    connect_saml(cast.other_org, cast.outsider, globex_idp)
    services.sso_connection_save(organization=cast.other_org, actor=cast.outsider,
                                 fields={"email_domains": ["globex.test"]})

    response = sso_sign_in(client, cast.other_org, globex_idp, "new@globex.test")

    assert response.status_code == 403
    assert b"has not verified any email domain" in response.content
    assert "Single sign-on → Email domains" in response.content.decode()
    assert not User.objects.filter(email="new@globex.test").exists()
    assert refusal(cast.other_org).data["reason"] == "no verified domain"


def test_the_idp_signs_in_people_of_its_own_verified_domain(client, cast, globex, globex_idp):
    response = sso_sign_in(client, globex, globex_idp, "new@globex.test")

    assert response.redirect_chain[-1][0] == "/o/globex/"
    user = User.objects.get(email="new@globex.test")
    assert Membership.objects.filter(organization=globex, user=user).exists()


# --- Per-organization assurance --------------------------------------------------------------

def require_sso(org: Organization, admin: User) -> None:
    services.organization_set_sso_policy(organization=org, actor=admin, sso_required=True,
                                         break_glass_user=None)


def test_a_password_session_is_sent_to_the_organizations_sso(client, cast, acme, acme_idp):
    carl = UserFactory(email="carl@acme.test")
    MembershipFactory(organization=acme, user=carl)
    client.force_login(carl)  # a password session, from before SSO was required
    require_sso(acme, cast.admin)

    response = client.get("/o/acme/")

    assert response.status_code == 302
    location = urlparse(response.url)
    assert location.path == "/sso/"
    assert parse_qs(location.query) == {"org": ["acme"], "next": ["/o/acme/"]}
    page = client.get(response.url)
    assert b"requires you to sign in through its identity provider" in page.content
    assert b'value="acme"' in page.content
    api = client.get("/api/v1/orgs/acme/")
    assert api.status_code == 403
    assert "requires signing in through its own single sign-on" in api.json()["error"]["message"]

    signed_in = sso_sign_in(client, acme, acme_idp, carl.email)

    assert signed_in.redirect_chain[-1][0] == "/o/acme/"
    assert signed_in.status_code == 200
    assert client.get("/api/v1/orgs/acme/").status_code == 200


def test_signing_in_through_another_organizations_idp_does_not_satisfy_it(
    client, cast, acme, globex, globex_idp
):
    dana = UserFactory(email="dana@globex.test")
    MembershipFactory(organization=globex, user=dana)
    MembershipFactory(organization=acme, user=dana)
    require_sso(acme, cast.admin)

    response = sso_sign_in(client, globex, globex_idp, dana.email)

    assert response.redirect_chain[-1][0] == "/o/globex/"
    assert response.wsgi_request.user == dana
    entered = client.get("/o/acme/")
    assert entered.status_code == 302 and entered.url.startswith("/sso/?org=acme")
    assert client.get("/api/v1/orgs/acme/members/").status_code == 403
    assert client.post("/api/v1/orgs/acme/tokens/", {"name": "x", "scopes": ["read"]},
                       content_type="application/json").status_code == 403
    assert not ApiToken.objects.filter(user=dana).exists()
    assert client.get("/o/globex/").status_code == 200


def test_the_break_glass_admin_enters_with_a_password_session(client, cast, acme):
    services.organization_set_sso_policy(organization=acme, actor=cast.admin, sso_required=True,
                                         break_glass_user=cast.admin)
    client.force_login(cast.admin)

    assert client.get("/o/acme/").status_code == 200
    assert client.get("/api/v1/orgs/acme/").status_code == 200


def test_an_api_token_is_not_asked_for_a_session(cast, acme):
    from tests.fixtures import token_client

    require_sso(acme, cast.admin)

    assert token_client(acme, cast.member, ["read"]).get("/api/v1/orgs/acme/").status_code == 200

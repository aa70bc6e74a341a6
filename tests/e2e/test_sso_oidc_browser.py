"""OpenID Connect sign-in through /sso/ with a real provider (npm oidc-provider) and Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.socialaccount.models import SocialAccount

from accounts import services
from accounts.models import Membership, User
from accounts.roles import Role
from accounts.tests.domains import verify_domain
from haao.models import AuditEvent
from tests.browser import skip_or_fail
from tests.factories import PASSWORD, MembershipFactory, UserFactory
from tests.servers.oidc_provider import OIDCProvider, node_available

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLIENT_ID = "haao-acme"
CLIENT_SECRET = "acme-secret-0123456789"
CALLBACK = "/accounts/oidc/org-acme/login/callback/"
ANN = {"sub": "ann-0001", "email": "ann@acme.test", "email_verified": True,
       "name": "Ann Lee", "password": "ann-password"}
BOB = {"sub": "bob-0002", "email": "bob@acme.test", "email_verified": True,
       "name": "Bob Ray", "password": "bob-password"}



@pytest.fixture(scope="module")
def op(live_server: Any):
    if not node_available():
        skip_or_fail("node >= 20 is needed for the OpenID provider test server")
    client = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
              "redirect_uris": [live_server.url + CALLBACK],
              "token_endpoint_auth_method": "client_secret_post"}
    with OIDCProvider(clients=[client], accounts=[ANN, BOB]) as provider:
        yield provider


@pytest.fixture
def acme(cast: Any, op: OIDCProvider, settings: Any):
    # The provider listens on loopback: the operator allows it (haao/ssrf.py).
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    op.set_mode("normal")
    services.sso_connection_save(
        organization=cast.org, actor=cast.admin,
        fields={"protocol": "oidc", "oidc_issuer": op.issuer, "oidc_client_id": CLIENT_ID,
                "email_domains": ["acme.test"], "default_role": Role.PRODUCT_OWNER},
        client_secret=CLIENT_SECRET,
    )
    verify_domain(cast.org, "acme.test", cast.admin)
    yield cast.org
    op.set_mode("normal")


def sign_in_with_sso(page: Any, base_url: str, identifier: str, account: dict[str, Any]) -> None:
    page.goto(base_url + "/sso/")
    page.fill("input[name=identifier]", identifier)
    page.click("button[type=submit]")
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", account["email"])
    page.fill("input[name=password]", account["password"])
    page.click("button[type=submit]")
    page.wait_for_load_state("load")


def test_sso_sign_in_lands_in_the_organization_with_the_default_role(
    page, live_server, op, acme
):
    op.clear_token_log()
    sign_in_with_sso(page, live_server.url, "ann@acme.test", ANN)

    page.wait_for_url(f"{live_server.url}/o/acme/")
    user = User.objects.get(email="ann@acme.test")
    assert user.name == "Ann Lee"
    assert Membership.objects.get(organization=acme, user=user).role == Role.PRODUCT_OWNER
    event = AuditEvent.objects.for_org(acme).get(type="sso.login")
    assert event.actor_user == user and event.data == {"protocol": "oidc"}
    token_request = op.token_log()[-1]
    assert token_request["client_auth"] == "body" and token_request["code_verifier_sent"]
    assert token_request["nonce"], "HAAO must send a nonce"


@pytest.mark.parametrize("mode", ["wrong_audience", "bad_signature", "wrong_issuer"])
def test_a_bad_id_token_is_refused_and_creates_nobody(page, live_server, op, acme, mode):
    op.set_mode(mode)
    sign_in_with_sso(page, live_server.url, "bob@acme.test", BOB)

    page.wait_for_selector("text=Third-Party Login Failure")
    assert op.token_log()[-1]["mode"] == mode  # the provider did issue the bad token
    assert not User.objects.filter(email="bob@acme.test").exists()
    assert not Membership.objects.filter(user__email="bob@acme.test").exists()
    assert not AuditEvent.objects.filter(type="sso.login").exists()


def test_a_replayed_callback_is_refused(page, live_server, op, acme):
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if CALLBACK in r.url else None)
    sign_in_with_sso(page, live_server.url, "ann@acme.test", ANN)
    page.wait_for_url(f"{live_server.url}/o/acme/")
    assert len(callbacks) == 1
    tokens_before = len(op.token_log())

    page.goto(callbacks[0])  # the same code, state and nonce again

    page.wait_for_selector("text=Third-Party Login Failure")
    assert len(op.token_log()) == tokens_before  # refused before the code was even used
    assert AuditEvent.objects.for_org(acme).filter(type="sso.login").count() == 1


def test_the_idp_cannot_sign_in_a_user_of_another_organization_only(
    page, live_server, op, acme, cast
):
    outsider = cast.outsider
    before = (outsider.password, outsider.name, outsider.is_active)
    op.add_account({"sub": "mallory-0003", "email": outsider.email, "email_verified": True,
                    "name": "Not The Owner", "password": "mallory-password"})
    account = {"email": outsider.email, "password": "mallory-password"}

    sign_in_with_sso(page, live_server.url, "acme", account)

    page.wait_for_selector(f"text=is not a member of {acme.name}")
    outsider.refresh_from_db()
    assert (outsider.password, outsider.name, outsider.is_active) == before
    assert not SocialAccount.objects.filter(user=outsider).exists()
    assert not Membership.objects.filter(organization=acme, user=outsider).exists()
    assert page.goto(f"{live_server.url}/o/globex/").url.startswith(
        f"{live_server.url}/accounts/login/")


GLOBEX_CLIENT = "haao-globex"
GLOBEX_SECRET = "globex-secret-0123456789"


@pytest.fixture
def globex(cast: Any, op: OIDCProvider, live_server: Any, acme: Any):
    """Globex's IdP: the same provider under another client, trusted for globex.test only."""
    op.add_client({"client_id": GLOBEX_CLIENT, "client_secret": GLOBEX_SECRET,
                   "redirect_uris": [live_server.url + "/accounts/oidc/org-globex/login/callback/"],
                   "token_endpoint_auth_method": "client_secret_post"})
    services.sso_connection_save(
        organization=cast.other_org, actor=cast.outsider,
        fields={"protocol": "oidc", "oidc_issuer": op.issuer, "oidc_client_id": GLOBEX_CLIENT},
        client_secret=GLOBEX_SECRET,
    )
    return cast.other_org


def test_another_organizations_idp_can_neither_create_nor_sign_in_an_acme_account(
    page, live_server, op, acme, globex
):
    op.add_account({"sub": "newhire-0004", "email": "newhire@acme.test",
                    "email_verified": True, "name": "New Hire", "password": "newhire-pw"})
    account = {"email": "newhire@acme.test", "password": "newhire-pw"}

    # Globex has verified no domain: its IdP signs nobody in.
    sign_in_with_sso(page, live_server.url, "globex", account)
    page.wait_for_selector("text=has not verified any email domain")

    verify_domain(globex, "globex.test", globex_admin(globex))
    page.goto(live_server.url + "/sso/")  # the provider remembers the person: no login form
    page.fill("input[name=identifier]", "globex")
    page.click("button[type=submit]")
    page.wait_for_selector("text=acme.test is not one of them")

    assert not User.objects.filter(email="newhire@acme.test").exists()
    assert not AuditEvent.objects.filter(type="sso.login").exists()
    assert [e.data["reason"] for e in AuditEvent.objects.for_org(globex)
            .filter(type="sso.login_refused").order_by("seq")] == [
        "no verified domain", "email domain not verified"]
    assert page.goto(f"{live_server.url}/o/acme/").url.startswith(
        f"{live_server.url}/accounts/login/")


def globex_admin(org: Any) -> User:
    return Membership.objects.get(organization=org, role=Role.ADMIN).user


def test_a_password_session_is_sent_to_the_organizations_idp_and_then_gets_in(
    page, live_server, op, acme, cast
):
    ann = UserFactory(email=ANN["email"])
    MembershipFactory(organization=acme, user=ann)
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=login]", ann.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    services.organization_set_sso_policy(organization=acme, actor=cast.admin, sso_required=True,
                                         break_glass_user=cast.admin)

    page.goto(f"{live_server.url}/o/acme/")

    assert "/sso/?org=acme" in page.url
    page.click("form[action='/sso/'] button[type=submit]")  # the header has other forms
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", ANN["email"])
    page.fill("input[name=password]", ANN["password"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/o/acme/")
    assert SocialAccount.objects.get(user=ann).provider == "org-acme"
    assert AuditEvent.objects.for_org(acme).get(type="sso.login").actor_user == ann

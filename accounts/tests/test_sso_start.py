"""The "Sign in with SSO" page and the allauth apps built from SSO connections."""

from __future__ import annotations

import pytest
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialApp
from django.test import Client

from accounts import services
from accounts.sso.forms import NOT_SET_UP
from tests.saml_idp import SamlIdP

SECRET = "oidc-client-secret-do-not-show"



@pytest.fixture
def client() -> Client:
    return Client(HTTP_HOST="testserver")


@pytest.fixture
def saml_acme(cast):
    idp = SamlIdP.create(entity_id="https://idp.acme.test", sso_url="https://idp.acme.test/sso")
    return services.sso_connection_save(
        organization=cast.org, actor=cast.admin,
        fields={"protocol": "saml", "saml_idp_entity_id": idp.entity_id,
                "saml_sso_url": idp.sso_url, "saml_x509_cert": idp.certificate_body,
                "email_domains": ["acme.test"]},
    )


@pytest.fixture
def oidc_globex(cast):
    return services.sso_connection_save(
        organization=cast.other_org, actor=cast.outsider,
        fields={"protocol": "oidc", "oidc_issuer": "https://login.globex.test",
                "oidc_client_id": "haao", "email_domains": ["globex.test"]},
        client_secret=SECRET,
    )


def test_the_page_asks_for_an_email_or_organization(client):
    response = client.get("/sso/")

    assert response.status_code == 200
    assert b'name="identifier"' in response.content
    assert b"Sign in with SSO" in response.content


@pytest.mark.parametrize("identifier", ["ann@acme.test", "ACME", " acme "])
def test_an_email_domain_or_slug_sends_the_browser_to_the_organizations_idp(
    client, saml_acme, identifier
):
    response = client.post("/sso/", {"identifier": identifier})

    assert response.status_code == 302
    assert response["Location"].startswith("https://idp.acme.test/sso?SAMLRequest=")


@pytest.mark.parametrize("identifier", ["someone@unknown.test", "no-such-org", "globex"])
def test_an_unknown_or_unconfigured_organization_gets_one_neutral_error(
    client, cast, identifier
):
    response = client.post("/sso/", {"identifier": identifier})

    assert response.status_code == 400
    assert NOT_SET_UP.encode() in response.content
    assert b"Globex" not in response.content


def test_a_disabled_connection_is_not_offered(client, cast, saml_acme):
    services.sso_connection_save(organization=cast.org, actor=cast.admin,
                                 fields={"enabled": False})

    response = client.post("/sso/", {"identifier": "ann@acme.test"})

    assert response.status_code == 400
    assert NOT_SET_UP.encode() in response.content


def test_a_malformed_email_is_named_as_such(client):
    response = client.post("/sso/", {"identifier": "ann@acme"})

    assert response.status_code == 400
    assert b"Enter a full email address" in response.content


def test_an_empty_form_is_a_form_error_not_a_crash(client):
    response = client.post("/sso/", {})

    assert response.status_code == 400
    assert b"This field is required" in response.content


def test_apps_come_from_connections_and_nothing_is_written_to_socialapp(
    rf, saml_acme, oidc_globex
):
    adapter = get_adapter()
    request = rf.get("/")

    oidc = adapter.get_app(request, provider="org-globex")
    saml = adapter.get_app(request, provider="saml", client_id="acme")

    assert (oidc.provider, oidc.client_id, oidc.secret) == ("openid_connect", "haao", SECRET)
    assert oidc.settings["server_url"] == "https://login.globex.test"
    assert oidc.settings["oauth_pkce_enabled"] is True
    assert saml.settings["idp"]["entity_id"] == "https://idp.acme.test"
    assert saml.settings["advanced"]["want_assertion_signed"] is True
    assert SocialApp.objects.count() == 0


def test_sign_in_pages_do_not_list_the_organizations_with_sso(client, saml_acme, oidc_globex):
    for path in ("/accounts/login/", "/sso/"):
        response = client.get(path)
        assert response.status_code == 200
        assert b"Acme" not in response.content and b"Globex" not in response.content
        assert SECRET.encode() not in response.content


def test_allauths_unverified_openid_route_is_gone_for_unknown_providers(client, oidc_globex):
    assert client.post("/accounts/oidc/org-nowhere/login/").status_code == 404

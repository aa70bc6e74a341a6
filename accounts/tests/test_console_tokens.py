"""API tokens page: shown once, stored hashed, revocable by their owner or an admin."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts import services, tokens
from accounts.models import ApiToken
from tests.fixtures import last_event, portal_client


def in_days(days: int) -> str:
    return (timezone.now().date() + timedelta(days=days)).isoformat()


def make_token(cast, user, name="ci") -> ApiToken:
    token, _ = services.api_token_create(organization=cast.org, user=user, name=name,
                                         scopes=["read"],
                                         expires_at=timezone.now() + timedelta(days=5))
    return token


def test_the_form_offers_scopes_and_a_ninety_day_default_expiry(cast):
    body = portal_client(cast.member).get("/o/acme/tokens/").content.decode()
    assert f'value="{in_days(90)}"' in body
    assert f'max="{in_days(365)}"' in body
    for scope in ("read", "write", "admin"):
        assert f'name="scopes" value="{scope}"' in body
    assert "You have no tokens yet" in body


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(cast):
    client = portal_client(cast.member)
    response = client.post("/o/acme/tokens/", {"name": "CI pipeline",
                                               "scopes": ["read", "write"],
                                               "expires_on": in_days(30)})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    raw = re.search(r'value="(haao_[0-9A-Za-z]+)"', body).group(1)
    assert tokens.looks_like_api_token(raw)
    assert "Copy your token now." in body and 'data-copy="#new-token"' in body
    token = ApiToken.objects.get(organization=cast.org, user=cast.member)
    assert token.token_hash == tokens.digest(raw)
    assert token.scopes == ["read", "write"] and token.name == "CI pipeline"
    assert token.expires_at.date().isoformat() == in_days(30)
    reloaded = client.get("/o/acme/tokens/").content.decode()
    assert raw not in reloaded
    assert token.prefix in reloaded and "Active" in reloaded and "Never" in reloaded
    assert last_event(cast.org).type \
        == "api_token.created"


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "scopes": ["read"], "expires_on": in_days(400)}, "at most one year"),
    ({"name": "x", "scopes": ["read"], "expires_on": in_days(0)}, "Choose a date after today."),
    ({"name": "x", "scopes": ["read"], "expires_on": "31/02/2025"}, "Enter a valid date."),
    ({"name": "x", "scopes": ["root"], "expires_on": in_days(5)}, "Select a valid choice."),
    ({"name": "x", "expires_on": in_days(5)}, "This field is required."),
    ({"name": "   ", "scopes": ["read"], "expires_on": in_days(5)}, "This field is required."),
    ({"name": "x" * 1_000_000, "scopes": ["read"], "expires_on": in_days(5)},
     "at most 100 characters"),
    ({"name": "a\x00b", "scopes": ["read"], "expires_on": in_days(5)},
     "Null characters are not allowed."),
])
def test_bad_token_input_is_a_form_error_and_no_token_is_made(cast, data, message):
    response = portal_client(cast.member).post("/o/acme/tokens/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiToken.objects.for_org(cast.org).exists()


def test_members_see_and_revoke_only_their_own_tokens(cast):
    mine = make_token(cast, cast.member, "mine")
    theirs = make_token(cast, cast.manager, "theirs")
    client = portal_client(cast.member)
    body = client.get("/o/acme/tokens/").content.decode()
    assert "mine" in body and "theirs" not in body
    assert client.post(f"/o/acme/tokens/{theirs.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None
    response = client.post(f"/o/acme/tokens/{mine.pk}/revoke/", follow=True)
    assert f"({mine.prefix}…) was revoked" in response.content.decode()
    assert ApiToken.objects.get(pk=mine.pk).revoked_at is not None
    assert "Revoked" in response.content.decode()
    event = last_event(cast.org)
    assert event.type == "api_token.revoked" and event.actor_user == cast.member


def test_admins_see_every_token_with_its_owner_and_may_revoke_any(cast):
    theirs = make_token(cast, cast.manager, "manager-ci")
    client = portal_client(cast.admin)
    body = client.get("/o/acme/tokens/").content.decode()
    assert "All tokens in Acme" in body and "manager-ci" in body and cast.manager.email in body
    client.post(f"/o/acme/tokens/{theirs.pk}/revoke/")
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is not None
    again = client.post(f"/o/acme/tokens/{theirs.pk}/revoke/", follow=True)
    assert "revoked already" in again.content.decode()


def test_another_organizations_token_is_not_found(cast):
    foreign, _ = services.api_token_create(
        organization=cast.other_org, user=cast.outsider, name="globex", scopes=["read"],
        expires_at=timezone.now() + timedelta(days=5))
    assert portal_client(cast.admin).post(f"/o/acme/tokens/{foreign.pk}/revoke/").status_code \
        == 404
    assert ApiToken.objects.get(pk=foreign.pk).revoked_at is None
    assert "globex" not in portal_client(cast.admin).get("/o/acme/tokens/").content.decode()


def test_the_page_shows_a_curl_example_for_this_host_that_works_with_a_token(cast):
    body = portal_client(cast.member).get("/o/acme/tokens/", secure=True).content.decode()
    example = re.search(r"data-curl-example>([^<]+)<", body)
    assert example is not None
    command = example[1].replace("&quot;", '"')
    assert command == ('curl -H "Authorization: Bearer &lt;token&gt;" '
                       "https://testserver/api/v1/orgs/acme/projects/")
    # Pasted with a real token, it answers.
    _, raw = services.api_token_create(organization=cast.org, user=cast.member, name="cli",
                                       scopes=["read"],
                                       expires_at=timezone.now() + timedelta(days=5))
    url = command.rsplit(" ", 1)[1]
    response = Client().get(url.removeprefix("https://testserver"), secure=True,
                            HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200 and "results" in response.json()

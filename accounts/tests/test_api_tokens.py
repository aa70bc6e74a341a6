"""Token authentication: what a script sees with a good, expired, revoked or foreign token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services, tokens
from accounts.models import ApiToken

pytestmark = pytest.mark.django_db

URL = "/api/v1/orgs/acme/"


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def make_token(cast, **kwargs) -> tuple[ApiToken, str]:
    options = {"organization": cast.org, "user": cast.member, "name": "ci", "scopes": ["read"],
               "expires_at": timezone.now() + timedelta(days=1), **kwargs}
    return services.api_token_create(**options)


def test_a_valid_token_works_and_its_use_is_recorded(cast) -> None:
    token, raw = make_token(cast)
    assert token.last_used_at is None
    response = bearer(raw).get(URL)
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert timezone.now() - token.last_used_at < timedelta(minutes=1)


def test_an_expired_token_answers_401_saying_so(cast) -> None:
    token, raw = make_token(cast)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(raw).get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "The token has expired."
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_answers_401(cast) -> None:
    token, raw = make_token(cast)
    services.api_token_revoke(organization=cast.org, token=token, actor=cast.member)
    response = bearer(raw).get(URL)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_a_token_with_a_bad_checksum_is_refused_without_a_lookup(
    cast, django_assert_num_queries
) -> None:
    _, raw = make_token(cast)
    tampered = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    assert not tokens.looks_like_api_token(tampered)
    with django_assert_num_queries(0):
        response = bearer(tampered).get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not-a-token",
                                    "Bearer haao_" + "x" * 38])
def test_a_malformed_authorization_header_answers_401(cast, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["message"]


def test_another_organizations_token_answers_404_like_a_missing_organization(cast) -> None:
    _, raw = services.api_token_create(
        organization=cast.other_org, user=cast.outsider, name="globex", scopes=["admin"],
        expires_at=timezone.now() + timedelta(days=1))
    foreign = bearer(raw).get(URL)
    missing = bearer(raw).get("/api/v1/orgs/no-such-org/")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


def test_a_token_stops_working_when_its_user_leaves_the_organization(cast) -> None:
    _, raw = make_token(cast)
    services.membership_remove(organization=cast.org, membership=cast.membership(cast.member),
                               actor=cast.admin)
    assert bearer(raw).get(URL).status_code == 401


def test_a_deactivated_users_token_answers_401(cast) -> None:
    _, raw = make_token(cast)
    cast.member.is_active = False
    cast.member.save(update_fields=["is_active"])
    assert bearer(raw).get(URL).status_code == 401

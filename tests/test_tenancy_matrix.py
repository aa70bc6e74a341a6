"""Every route of the project against every kind of caller: tenancy cannot be skipped.

The matrix is built from the URL resolver when the tests are collected, so a route added
later is covered without touching this file. A route must either be organization-scoped
(its view derives from haao.views.OrgView or haao.endpoints.OrgScoped) or be
listed below with the reason it is not; anything else fails.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Membership
from accounts.roles import SCOPE_IMPLIES, TokenScope, role_can
from haao.endpoints import SAFE_METHODS, OrgScoped
from haao.views import OrgView
from tests.fixtures import Cast, page_as_compared, token_client
from tests.routes import (
    ALL_ROUTES,
    CHECKED,
    MISSING_ORG,
    PARAMETER,
    SCOPED,
    SIGNED_IN_ONLY,
    Route,
    public_reason,
)


def _ids(routes: list[Route]) -> list[str]:
    return [r.route or "/" for r in routes]


# --- Filling URLs with real objects of the cast's organization ------------------------------

@pytest.fixture
def url_values(cast: Cast) -> dict[str, str]:
    """A real object of the cast's organization for each URL parameter name we know."""
    membership = str(cast.membership(cast.member).pk)
    invitation, _ = services.invitation_create(organization=cast.org, email="new@example.test",
                                               role="member", actor=cast.admin)
    token, _ = services.api_token_create(organization=cast.org, user=cast.member, name="matrix",
                                         scopes=["read"],
                                         expires_at=timezone.now() + timedelta(days=1))
    return {
        "org": cast.org.slug,
        "membership": membership, "membership_id": membership, "member": membership,
        "invitation": str(invitation.pk), "invitation_id": str(invitation.pk),
        "token": str(token.pk), "token_id": str(token.pk),
        "key": cast.project.key, "project": cast.project.key, "project_key": cast.project.key,
    }


def fill(route: str, values: dict[str, str], org: str | None = None) -> str:
    """The route as a URL; unknown parameters get a well-formed value of no object."""
    if route.startswith("^") or "(?P<" in route:
        pytest.fail(f"{route}: a regular-expression route; add it to PUBLIC or teach fill()")

    def value(match: re.Match[str]) -> str:
        name, converter = match["name"], match["converter"] or "str"
        if name == "org" and org is not None:
            return org
        if name in values:
            return values[name]
        return {"int": "1", "uuid": str(uuid.uuid4())}.get(converter, "x")

    return "/" + PARAMETER.sub(value, route)


def _signed_in(user: Any, api: bool) -> Client:
    client: Client = APIClient() if api else Client()
    client.force_login(user)
    return client


def _call(client: Client, method: str, url: str) -> Any:
    return client.generic(method, url)


# --- The matrix ------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ALL_ROUTES, ids=_ids(ALL_ROUTES))
def test_every_route_is_organization_scoped_or_listed_as_public(route: Route) -> None:
    if public_reason(route.route) or route.route in SIGNED_IN_ONLY:
        return
    view = route.view_class
    assert view is not None and issubclass(view, (OrgView, OrgScoped)), (
        f"/{route.route} is served by {view or route.pattern.callback!r}, which is not an "
        "OrgView/OrgScoped view; derive it from haao.views.OrgView (or OrgPage) or "
        "haao.endpoints (OrgEndpoint, OrgAPIView), or list it in "
        "PUBLIC/SIGNED_IN_ONLY with the reason."
    )
    assert "<slug:org>" in route.route or "<org>" in route.route, (
        f"/{route.route}: an organization view needs the organization in its URL as <org>")
    assert route.methods, f"/{route.route}: its view answers no method"


@pytest.mark.parametrize("route", SCOPED, ids=_ids(SCOPED))
def test_anonymous_callers_are_sent_to_sign_in(route: Route, url_values) -> None:
    url = fill(route.route, url_values)
    client = APIClient() if route.is_api else Client()
    for method in route.methods:
        response = _call(client, method, url)
        if route.is_api:
            assert response.status_code == 401, f"{method} {url}: {response.status_code}"
            assert response.json()["error"]["code"] == "not_authenticated"
        else:
            assert response.status_code == 302, f"{method} {url}: {response.status_code}"
            assert response["Location"].startswith(resolve_url(settings.LOGIN_URL))


@pytest.mark.parametrize("route", SCOPED, ids=_ids(SCOPED))
def test_an_outsider_gets_the_same_404_as_for_a_missing_organization(
    route: Route, cast: Cast, url_values
) -> None:
    url = fill(route.route, url_values)
    missing_url = fill(route.route, url_values, org=MISSING_ORG)
    callers = [_signed_in(cast.outsider, route.is_api)]
    if route.is_api:
        # A token of globex, with every scope, used on acme's URL.
        callers.append(token_client(cast.other_org, cast.outsider, ["admin"]))
    for client in callers:
        for method in route.methods:
            response = _call(client, method, url)
            missing = _call(client, method, missing_url)
            assert response.status_code == 404, f"{method} {url}: {response.status_code}"
            assert missing.status_code == 404, f"{method} {missing_url}: {missing.status_code}"
            assert page_as_compared(response, url) == \
                page_as_compared(missing, missing_url), f"{method} {url}"


CAPABILITY_ROUTES = [r for r in SCOPED if any(r.capability_for(m) for m in r.methods)]


@pytest.mark.parametrize("route", CAPABILITY_ROUTES, ids=_ids(CAPABILITY_ROUTES))
def test_a_member_without_the_capability_gets_403(route: Route, cast: Cast, url_values) -> None:
    url = fill(route.route, url_values)
    before = Membership.objects.for_org(cast.org).count()
    for method in route.methods:
        capability = route.capability_for(method)
        if capability is None:
            continue
        assert not role_can("member", capability)
        # For the API, a token with every scope: the role alone must refuse.
        client = (token_client(cast.org, cast.member, ["admin"]) if route.is_api
                  else _signed_in(cast.member, api=False))
        response = _call(client, method, url)
        assert response.status_code == 403, f"{method} {url}: {response.status_code}"
    assert Membership.objects.for_org(cast.org).count() == before


def _scope_cases(route: Route) -> list[tuple[str, list[str]]]:
    """(method, a token's scopes that fall short of what the method needs)."""
    cases = []
    for method in route.methods:
        needed = route.scope_for(method)
        short = [scope for scope in TokenScope.values if needed not in SCOPE_IMPLIES[scope]]
        if short:
            # The widest scope that still falls short, e.g. write for an admin endpoint.
            cases.append((method, [short[-1]]))
    return cases


SCOPE_ROUTES = [r for r in SCOPED if r.is_api and _scope_cases(r)]


@pytest.mark.parametrize("route", SCOPE_ROUTES, ids=_ids(SCOPE_ROUTES))
def test_a_token_without_the_scope_gets_403_even_for_an_admin(
    route: Route, cast: Cast, url_values
) -> None:
    url = fill(route.route, url_values)
    for method, scopes in _scope_cases(route):
        client = token_client(cast.org, cast.admin, scopes)
        response = _call(client, method, url)
        assert response.status_code == 403, f"{method} {url} with {scopes}: {response.status_code}"
        assert "scope" in response.json()["error"]["message"]
    read_only = token_client(cast.org, cast.admin, ["read"])
    for method in route.methods:
        if method not in SAFE_METHODS:
            assert _call(read_only, method, url).status_code == 403, f"{method} {url}"


@pytest.mark.parametrize("route", sorted(SIGNED_IN_ONLY), ids=lambda r: r or "/")
def test_routes_without_an_organization_need_a_signed_in_user(route: str, db) -> None:
    if route.startswith("api/"):
        assert APIClient().get(f"/{route}").status_code == 401
    else:
        response = Client().get(f"/{route}")
        assert response.status_code == 302
        assert response["Location"].startswith(resolve_url(settings.LOGIN_URL))


def test_the_matrix_found_the_organization_routes_it_must_cover() -> None:
    routes = {r.route for r in SCOPED}
    assert "api/v1/orgs/<slug:org>/members/" in routes
    assert "api/v1/orgs/<slug:org>/projects/<str:key>/grants/<uuid:membership>/" in routes
    assert "o/<slug:org>/" in routes
    assert {r.route for r in CHECKED} == routes, "an unscoped route slipped through"

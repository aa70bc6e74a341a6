"""Every route of the project against every kind of caller: tenancy cannot be skipped.

The matrix is built from the URL resolver when the tests are collected, so a route added
later is covered without touching this file. A route must either be organization-scoped
(its view derives from haao.views.OrgView or haao.endpoints.OrgScoped) or be
listed below with the reason it is not; anything else fails.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Membership
from accounts.roles import SCOPE_IMPLIES, TokenScope, role_can
from haao.endpoints import SAFE_METHODS, OrgScoped
from haao.views import OrgView
from tests.fixtures import Cast, page_as_compared

# Routes that are not organization-scoped on purpose, by prefix, with the reason.
PUBLIC = {
    "health": "load balancers probe it without credentials",
    "metrics": "platform-wide figures for the operators' Prometheus; a bearer token of its "
               "own (HAAO_METRICS_TOKEN), 404 when none is set",
    "platform-admin/": "Django's admin for platform operators; staff-only by its own checks",
    "accounts/": "django-allauth: sign-in, sign-up, password reset, email, MFA",
    "sso/": "single sign-on starts before anyone is signed in",
    "invitations/<str:token>/": "the secret link is the credential; accepting needs sign-in",
    "api/v1/schema/": "the public OpenAPI description",
    "api/v1/docs/": "the public API documentation page",
    "api/v1/redoc/": "the same documentation, as ReDoc",
    "api/v1/schemas/": "the Atomic Ticket JSON Schema, published for agents and tools",
    "hooks/forge/": "a forge's webhook: the project's shared secret signs each delivery, and "
                    "an unknown project, a missing secret and a bad signature all get 404",
}
# Exact routes that need a signed-in user but no organization: they list only the caller's.
SIGNED_IN_ONLY = {
    "": "the organization picker shows only the caller's organizations",
    "api/v1/orgs/": "lists only the caller's organizations (a token: only its own)",
}
MISSING_ORG = "no-such-org"
PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


@dataclass(frozen=True)
class Route:
    route: str
    pattern: URLPattern

    @property
    def view_class(self) -> type | None:
        callback = self.pattern.callback
        return getattr(callback, "view_class", None) or getattr(callback, "cls", None)

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")

    @property
    def methods(self) -> list[str]:
        actions = getattr(self.pattern.callback, "actions", None)
        if actions:  # a DRF viewset route
            names = list(actions)
        else:
            view = self.view_class
            names = [m for m in getattr(view, "http_method_names", []) if hasattr(view, m)]
        return [m.upper() for m in names if m not in ("options", "head")]

    def capability_for(self, method: str) -> str | None:
        view = self.view_class
        needed = getattr(view, "required_capability", None)
        if needed is None and method not in SAFE_METHODS:
            # accounts.api.views.OrgEndpoint: a capability that guards writes only.
            needed = getattr(view, "write_capability", None)
        return needed

    def scope_for(self, method: str) -> str:
        view = self.view_class
        return getattr(view, "read_scope" if method in SAFE_METHODS else "write_scope")


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[Route]:
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry, route)
        else:
            yield Route(route, entry)


def _public_reason(route: str) -> str | None:
    for prefix, reason in PUBLIC.items():
        if route == prefix or (prefix.endswith("/") and route.startswith(prefix)):
            return reason
    return None


ALL_ROUTES = list(_walk(get_resolver()))
CHECKED = [r for r in ALL_ROUTES if _public_reason(r.route) is None
           and r.route not in SIGNED_IN_ONLY]
SCOPED = [r for r in CHECKED if r.view_class and issubclass(r.view_class, (OrgView, OrgScoped))]


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


def _token_client(cast: Cast, org: Any, user: Any, scopes: list[str]) -> APIClient:
    _, raw = services.api_token_create(organization=org, user=user, name="matrix",
                                       scopes=scopes,
                                       expires_at=timezone.now() + timedelta(days=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _signed_in(user: Any, api: bool) -> Client:
    client: Client = APIClient() if api else Client()
    client.force_login(user)
    return client


def _call(client: Client, method: str, url: str) -> Any:
    return client.generic(method, url)


# --- The matrix ------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ALL_ROUTES, ids=_ids(ALL_ROUTES))
def test_every_route_is_organization_scoped_or_listed_as_public(route: Route) -> None:
    if _public_reason(route.route) or route.route in SIGNED_IN_ONLY:
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
        callers.append(_token_client(cast, cast.other_org, cast.outsider, ["admin"]))
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
        client = (_token_client(cast, cast.org, cast.member, ["admin"]) if route.is_api
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
        client = _token_client(cast, cast.org, cast.admin, scopes)
        response = _call(client, method, url)
        assert response.status_code == 403, f"{method} {url} with {scopes}: {response.status_code}"
        assert "scope" in response.json()["error"]["message"]
    read_only = _token_client(cast, cast.org, cast.admin, ["read"])
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

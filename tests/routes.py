"""Every route of HAAO, from the URL resolver, with the reason each public one is public:
what the tenancy matrix (tests/test_tenancy_matrix.py) and the bad-input suites walk."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

from haao.endpoints import SAFE_METHODS, OrgScoped
from haao.views import OrgView

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


def public_reason(route: str) -> str | None:
    for prefix, reason in PUBLIC.items():
        if route == prefix or (prefix.endswith("/") and route.startswith(prefix)):
            return reason
    return None


ALL_ROUTES = list(_walk(get_resolver()))
CHECKED = [r for r in ALL_ROUTES if public_reason(r.route) is None
           and r.route not in SIGNED_IN_ONLY]
SCOPED = [r for r in CHECKED if r.view_class and issubclass(r.view_class, (OrgView, OrgScoped))]


# Write endpoints whose bad-input cases live beside them (the body is an Atomic Ticket spec,
# or they act on a ticket or requirement in a given state).
COVERED_ELSEWHERE = {
    "api/v1/orgs/<slug:org>/requirements/<str:key>/": "tickets/tests/test_api_bad_input.py",
    "api/v1/orgs/<slug:org>/tickets/<str:key>/": "tickets/tests/test_api_bad_input.py",
}

"""The one door of the REST API: every `/api/v1/orgs/<org>/…` endpoint resolves its
organization here, before any handler runs."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import exceptions, generics
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.assurance import session_satisfies
from accounts.models import ApiToken, Membership, Organization, User
from accounts.roles import SCOPE_IMPLIES, TokenScope, role_can
from accounts.selectors import membership_for
from haao.api import NOT_FOUND_MESSAGE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class OrgScoped:
    """Resolves the organization from the URL and the caller's membership once per request.

    Anonymous → 401; token of another organization, non-member or missing org → the same
    404; a session that did not meet the organization's SSO rule → 403; role without
    `required_capability` or token without the scope → 403. Subclasses may not override
    `initial`, so none can skip it.
    """

    required_capability: ClassVar[str | None] = None
    # Scope a token needs for reads and writes; admin endpoints set both to ADMIN.
    read_scope: ClassVar[str] = TokenScope.READ
    write_scope: ClassVar[str] = TokenScope.WRITE
    org: Organization
    membership: Membership

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "initial" in cls.__dict__:
            raise TypeError(f"{cls.__name__} may not override initial(): tenancy is resolved "
                            "there for every organization endpoint.")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]  # authenticates
        if request.user is None or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        slug = self.kwargs.get("org", "")  # type: ignore[attr-defined]
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None and token.organization.slug != slug:
            raise exceptions.NotFound(NOT_FOUND_MESSAGE)
        membership = membership_for(user=request.user, org_slug=slug)
        if membership is None:
            raise exceptions.NotFound(NOT_FOUND_MESSAGE)
        self.membership = membership
        self.org = membership.organization
        # A token is bound to its organization when it is made; a session must have met the
        # organization's sign-in rule (its own SSO, when required) in this session.
        if token is None and not session_satisfies(session=getattr(request, "session", None),
                                                   user=membership.user, organization=self.org):
            raise exceptions.PermissionDenied(
                f"{self.org.name} requires signing in through its own single sign-on. Sign in "
                "through the organization's identity provider, then try again.")
        if self.required_capability and not role_can(membership.role, self.required_capability):
            raise exceptions.PermissionDenied("Your role in this organization does not allow "
                                              "this.")
        if token is not None:
            needed = self.read_scope if request.method in SAFE_METHODS else self.write_scope
            granted: set[str] = set()
            for scope in token.scopes:
                granted |= SCOPE_IMPLIES.get(scope, frozenset())
            if needed not in granted:
                raise exceptions.PermissionDenied(f"This token lacks the '{needed}' scope.")

    def can(self, capability: str) -> bool:
        return role_can(self.membership.role, capability)


class OrgAPIView(OrgScoped, APIView):
    pass


class OrgGenericAPIView(OrgScoped, generics.GenericAPIView):
    pass


class OrgEndpoint(OrgGenericAPIView):
    """An organization endpoint whose writes may need a capability its reads do not.

    `required_capability` (checked by the base class) guards every method;
    `write_capability` guards only the unsafe ones, whose handlers start with
    `require_write_capability()`. tests/test_tenancy_matrix.py reads both and fails when a
    handler forgets the call.
    """

    write_capability: ClassVar[str | None] = None

    def require_write_capability(self) -> None:
        if self.write_capability and not self.can(self.write_capability):
            raise PermissionDenied("Your role in this organization does not allow this.")

    def is_schema_generation(self) -> bool:
        return bool(getattr(self, "swagger_fake_view", False))

    @property
    def actor(self) -> User:
        """The signed-in user; the base class has refused anonymous callers already."""
        user = self.request.user
        assert isinstance(user, User)
        return user

    def token(self) -> ApiToken | None:
        auth = self.request.auth
        return auth if isinstance(auth, ApiToken) else None

"""The one door of the portal: every `/o/<org>/…` page resolves its organization here, and
the page base every organization page derives from."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import urlencode
from django.views import View
from django.views.generic import TemplateView

from accounts.assurance import session_satisfies
from accounts.models import Membership, Organization, User
from accounts.roles import role_can
from accounts.selectors import membership_for
from haao.errors import ApplicationError


class OrgView(View):
    """Base of every organization page.

    Resolves the organization from the URL's `org` and the caller's membership once, before
    any handler runs. Anonymous → login redirect; not a member (or no such org) → the same
    404; a session that did not meet the organization's sign-in rule (its own SSO, when
    required) → that organization's SSO start; a member without `required_capability` →
    403. Subclasses cannot override `setup` or `dispatch`, so they cannot skip it.
    """

    required_capability: ClassVar[str | None] = None
    org: Organization
    membership: Membership

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("setup", "dispatch"):
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} may not override {name}(): tenancy is "
                                "resolved there for every organization page.")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = membership_for(user=request.user, org_slug=kwargs.pop("org"))
        if membership is None:
            raise Http404("Not found.")
        self.membership = membership
        self.org = membership.organization
        if not session_satisfies(session=request.session, user=membership.user,
                                 organization=self.org):
            # The organization requires its own SSO and this session did not sign in there.
            query = urlencode({"org": self.org.slug, "next": request.get_full_path()})
            return redirect(f"{reverse('sso-start')}?{query}")
        if self.required_capability and not role_can(membership.role, self.required_capability):
            raise PermissionDenied("Your role in this organization does not allow this.")
        return super().dispatch(request, *args, **kwargs)

    def can(self, capability: str) -> bool:
        return role_can(self.membership.role, capability)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)  # type: ignore[misc]
        context.update(org=self.org, membership=self.membership)
        return context


class OrgPage(OrgView, TemplateView):
    """An organization page that renders its template again, with a status, when input is bad."""

    def render(self, status: int = 200, **context: Any) -> HttpResponse:
        response = self.render_to_response(self.get_context_data(**context), status=status)
        assert isinstance(response, HttpResponse)
        return response

    @property
    def user(self) -> User:
        """The signed-in member (OrgView turned anonymous callers away)."""
        return cast(User, self.request.user)

    def org_url(self, name: str, **kwargs: Any) -> str:
        return reverse(name, kwargs={"org": self.org.slug, **kwargs})


def no_store(response: HttpResponse) -> HttpResponse:
    """Pages that show a secret once must not be kept by the browser or a proxy."""
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store, " + response["Cache-Control"]
    return response


def service_error(form: Any, error: ApplicationError | ValidationError) -> None:
    """Put a domain error on the form: on the field its details name, else on the form."""
    if isinstance(error, ValidationError):
        if hasattr(error, "error_dict"):
            for field, errors in error.error_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, error)
        return
    fields = [name for name in error.details if name in form.fields]
    form.add_error(fields[0] if fields else None, error.message)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A refused form (CSRF check failed) as a portal page that says what to do next."""
    return render(request, "403_csrf.html", {"reason": reason}, status=403)

"""The console's shared page class and helpers."""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ValidationError
from django.http import (
    HttpResponse,
)
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.generic import TemplateView

from accounts.models import (
    User,
)
from accounts.views.base import OrgView
from haao.errors import ApplicationError

AUDIT_PAGE_SIZE = 50
SUMMARY_LENGTH = 160
# Spreadsheet programs run cells that start with these as formulas (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class ConsolePage(OrgView, TemplateView):
    """A console page that renders its template again, with a status, when input is bad."""

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

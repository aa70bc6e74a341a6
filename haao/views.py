"""Pages of the project itself rather than of an app."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A refused form (CSRF check failed) as a portal page that says what to do next."""
    return render(request, "403_csrf.html", {"reason": reason}, status=403)

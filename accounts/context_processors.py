"""Template context shared by portal pages: the organizations for the org switcher."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.selectors import organizations_of


def organizations(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"user_orgs": SimpleLazyObject(lambda: list(organizations_of(user=user)))}

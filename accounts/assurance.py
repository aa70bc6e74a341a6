"""Per-organization sign-in assurance: which organizations' sign-in rules a session met.

An organization that requires SSO admits a session only if it signed in through that
organization's own identity provider (or belongs to its break-glass admin). Signing in
through another organization's IdP, or with a password, never satisfies it. The portal door
(haao/views.py) and the API door (haao/endpoints.py) ask `session_satisfies`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends.base import SessionBase

from accounts.models import Organization, User

SESSION_KEY = "haao_sso_orgs"


def _granted(session: SessionBase, user: User) -> list[str]:
    value: Any = session.get(SESSION_KEY)
    # Bound to the user: a record left by someone else in this session grants nothing.
    if not isinstance(value, dict) or value.get("user") != str(user.pk):
        return []
    orgs = value.get("orgs")
    return [str(org) for org in orgs] if isinstance(orgs, list) else []


def session_record_sso(*, session: SessionBase, user: User, organization: Organization) -> None:
    """Note that this session signed in through `organization`'s identity provider."""
    orgs = _granted(session, user)
    if str(organization.pk) not in orgs:
        orgs.append(str(organization.pk))
    session[SESSION_KEY] = {"user": str(user.pk), "orgs": orgs}


def session_satisfies(
    *, session: SessionBase | None, user: User, organization: Organization
) -> bool:
    """Whether this session (None: a request without one) met the organization's sign-in rule."""
    if not organization.sso_required:
        return True
    if session is None:
        return False
    if organization.break_glass_user_id is not None and organization.break_glass_user_id == user.pk:
        return True
    return str(organization.pk) in _granted(session, user)

"""`{% if membership|can:"manage_members" %}`: templates read the roles table, not role names."""

from __future__ import annotations

from typing import Any

from django import template

from accounts.roles import role_can

register = template.Library()


@register.filter
def can(membership: Any, capability: str) -> bool:
    """Whether the member's role has `capability` (accounts.roles); False without one."""
    return membership is not None and role_can(getattr(membership, "role", ""), capability)

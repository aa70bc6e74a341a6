"""Tenancy through one door: every tenant-owned model, every org-scoped query."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from django.db import models

if TYPE_CHECKING:
    from accounts.models import Organization

_M = TypeVar("_M", bound=models.Model)


class TenantQuerySet(models.QuerySet[_M]):
    """Querysets of tenant-owned rows; reach rows through `for_org(org)`."""

    def for_org(self, organization: Organization) -> TenantQuerySet[_M]:
        if organization is None or organization.pk is None:
            # Fail closed: a missing organization must never mean "all organizations".
            raise ValueError("for_org() needs a saved organization.")
        return self.filter(organization=organization)


class TenantModel(models.Model):
    """Base of every tenant-owned model: a non-null organization and an org-scoped queryset."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", editable=False
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True

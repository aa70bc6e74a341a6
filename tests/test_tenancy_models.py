"""Every tenant-owned model is scoped: a new model without scoping fails this test."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import models

from accounts.models import Organization
from haao.tenancy import TenantQuerySet

# Models that are not owned by one organization, each with the reason.
GLOBAL_MODELS = {
    "accounts.user": "a person may belong to several organizations",
    "accounts.organization": "the tenant itself",
    "tickets.projectuserobjectpermission": "guardian grant; reached only through its project",
    "tickets.projectgroupobjectpermission": "guardian grant; reached only through its project",
}
# Apps whose models are third-party plumbing, reached only through HAAO's own models.
THIRD_PARTY_APPS = {
    "admin", "auth", "contenttypes", "sessions", "guardian", "account", "socialaccount",
    "mfa", "django_celery_beat",
}


def haao_models() -> list[type[models.Model]]:
    return [m for m in apps.get_models() if m._meta.app_label not in THIRD_PARTY_APPS]


@pytest.mark.parametrize("model", haao_models(), ids=lambda m: m._meta.label_lower)
def test_every_model_is_scoped_to_an_organization_or_declared_global(model: type) -> None:
    label = model._meta.label_lower
    if label in GLOBAL_MODELS:
        return
    field = model._meta.get_field("organization")
    assert field.is_relation and field.related_model is Organization, label
    assert not field.null, f"{label}.organization must not be nullable"
    assert isinstance(model._default_manager.all(), TenantQuerySet), (
        f"{label} needs an org-scoped queryset (TenantQuerySet) with for_org()"
    )


def test_the_global_list_names_only_models_that_exist() -> None:
    labels = {m._meta.label_lower for m in apps.get_models()}
    assert set(GLOBAL_MODELS) <= labels


def test_for_org_refuses_a_missing_organization(db: None) -> None:
    from accounts.models import Membership

    with pytest.raises(ValueError):
        Membership.objects.for_org(None)  # type: ignore[arg-type]

"""The Django admin for platform operators: every page opens, secrets stay hidden."""

from __future__ import annotations

import pytest
from django.contrib import admin

from accounts import services
from accounts.models import User
from haao.audit import SYSTEM, audit_record
from haao.models import AuditEvent


@pytest.fixture
def operator_client(client, db):
    operator = User.objects.create_superuser("operator@example.test", "x-very-long-password")
    client.force_login(operator)
    return client


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label_lower)
def test_every_admin_list_opens_for_an_operator(operator_client, cast, model) -> None:
    meta = model._meta
    response = operator_client.get(f"/platform-admin/{meta.app_label}/{meta.model_name}/")
    assert response.status_code == 200


def test_the_sso_secret_is_never_rendered_and_blank_keeps_it(operator_client, cast) -> None:
    sso = services.sso_connection_save(
        organization=cast.org, actor=cast.admin, client_secret="admin-hidden-secret",
        fields={"protocol": "oidc", "oidc_issuer": "https://idp.example.com",
                "oidc_client_id": "haao"})
    url = f"/platform-admin/accounts/ssoconnection/{sso.pk}/change/"
    page = operator_client.get(url)
    assert page.status_code == 200 and "admin-hidden-secret" not in page.content.decode()
    form = page.context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items()
            if name in form.fields}
    data.update(protocol="oidc", email_domains="[]", enabled="on", default_role="member",
                oidc_client_secret="")
    operator_client.post(url, data)
    sso.refresh_from_db()
    assert sso.oidc_client_secret.reveal() == "admin-hidden-secret"


def test_audit_events_cannot_be_edited_or_deleted_in_the_admin(operator_client, cast) -> None:
    event = audit_record(organization=cast.org, actor=SYSTEM, type="test.event")
    base = f"/platform-admin/haao/auditevent/{event.pk}"
    assert operator_client.post(f"{base}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_a_member_who_is_not_staff_cannot_open_the_admin(client, cast) -> None:
    client.force_login(cast.admin)
    response = client.get("/platform-admin/")
    assert response.status_code == 302 and "login" in response["Location"]

"""The organization's explicit opt-in to running checks without bubblewrap."""

from __future__ import annotations

from typing import Any

import pytest

from accounts import services
from accounts.models import Organization
from haao.errors import ApplicationError, Forbidden
from haao.models import AuditEvent
from tests.fixtures import last_event, portal_client

URL = "/o/acme/admin/sso/unsandboxed-checks/"


def allowed(org: Organization) -> bool:
    return Organization.objects.get(pk=org.pk).allow_unsandboxed_checks


def test_organizations_refuse_unsandboxed_checks_by_default(cast: Any) -> None:
    assert not allowed(cast.org)


def test_allowing_unsandboxed_checks_is_audited_with_the_reason(cast: Any) -> None:
    services.organization_set_unsandboxed(organization=cast.org, actor=cast.admin, allowed=True,
                                          reason="  CI runners are throwaway VMs  ")
    assert allowed(cast.org)
    event = last_event(cast.org)
    assert event is not None and event.type == "organization.unsandboxed_changed"
    assert event.actor_user == cast.admin
    assert event.data == {"before": {"allow_unsandboxed_checks": False},
                          "after": {"allow_unsandboxed_checks": True},
                          "reason": "CI runners are throwaway VMs"}


def test_turning_it_on_without_a_reason_is_refused_and_nothing_changes(cast: Any) -> None:
    before = AuditEvent.objects.for_org(cast.org).count()
    for reason in ("", "   "):
        with pytest.raises(ApplicationError) as refused:
            services.organization_set_unsandboxed(organization=cast.org, actor=cast.admin,
                                                  allowed=True, reason=reason)
        assert "reason" in refused.value.details
    with pytest.raises(ApplicationError) as too_long:
        services.organization_set_unsandboxed(organization=cast.org, actor=cast.admin,
                                              allowed=True, reason="x" * 501)
    assert "at most 500" in too_long.value.message
    assert not allowed(cast.org)
    assert AuditEvent.objects.for_org(cast.org).count() == before


def test_turning_it_off_needs_no_reason(cast: Any) -> None:
    services.organization_set_unsandboxed(organization=cast.org, actor=cast.admin, allowed=True,
                                          reason="no bwrap on the build box yet")
    services.organization_set_unsandboxed(organization=cast.org, actor=cast.admin,
                                          allowed=False, reason="")
    assert not allowed(cast.org)
    event = last_event(cast.org)
    assert event is not None and event.data["after"] == {"allow_unsandboxed_checks": False}


def test_only_an_admin_of_the_organization_may_change_it(cast: Any) -> None:
    for actor in (cast.manager, cast.outsider):
        with pytest.raises(Forbidden):
            services.organization_set_unsandboxed(organization=cast.org, actor=actor,
                                                  allowed=True, reason="because")
    assert not allowed(cast.org)


def test_the_sso_page_shows_the_opt_in_with_a_red_warning(cast: Any) -> None:
    body = portal_client(cast.admin).get("/o/acme/admin/sso/").content.decode()
    assert "Security: unsandboxed checks" in body
    assert 'class="text-sm font-semibold text-red-700"' in body
    assert "no isolation" in body
    assert f'action="{URL}"' in body


def test_an_admin_allows_it_from_the_console(cast: Any) -> None:
    client = portal_client(cast.admin)
    response = client.post(URL, {"allowed": "on", "reason": "Workers are disposable VMs"})
    assert response.status_code == 302
    assert allowed(cast.org)
    body = client.get("/o/acme/admin/sso/").content.decode()
    assert "Unsandboxed checks are now allowed." in body
    assert "each such attempt carries a warning" in body
    event = last_event(cast.org)
    assert event is not None and event.data["reason"] == "Workers are disposable VMs"
    assert client.post(URL, {}).status_code == 302
    assert not allowed(cast.org)


def test_the_console_form_names_a_missing_or_overlong_reason(cast: Any) -> None:
    client = portal_client(cast.admin)
    response = client.post(URL, {"allowed": "on", "reason": ""})
    assert response.status_code == 400
    assert "Say why checks may run without a sandbox." in response.content.decode()
    response = client.post(URL, {"allowed": "on", "reason": "x" * 501})
    assert response.status_code == 400
    assert "at most 500 characters" in response.content.decode()
    assert not allowed(cast.org)


@pytest.mark.parametrize("role", ["product_owner", "manager", "member"])
def test_other_roles_get_403_and_nothing_changes(cast: Any, role: str) -> None:
    response = portal_client(getattr(cast, role)).post(URL, {"allowed": "on", "reason": "why not"})
    assert response.status_code == 403
    assert not allowed(cast.org)


def test_an_outsider_gets_404(cast: Any) -> None:
    response = portal_client(cast.outsider).post(URL, {"allowed": "on", "reason": "why not"})
    assert response.status_code == 404
    assert not allowed(cast.org)

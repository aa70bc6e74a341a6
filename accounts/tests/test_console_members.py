"""Members page: role changes, removal, the last-admin rule and per-project grants."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Membership
from accounts.roles import Role
from haao.models import AuditEvent
from tests.factories import ProjectFactory
from tests.fixtures import last_event


def test_the_members_page_lists_every_member_with_role_and_joined_date(cast, admin_portal):
    body = admin_portal.get("/o/acme/admin/members/").content.decode()
    for user in (cast.admin, cast.product_owner, cast.manager, cast.member):
        assert user.email in body
    assert cast.outsider.email not in body
    assert "Product owner" in body and "<time" in body
    assert f'<label for="role-{cast.membership(cast.member).pk}"' in body


def test_an_admin_changes_a_role_and_the_change_is_audited(cast, admin_portal):
    member = cast.membership(cast.member)
    response = admin_portal.post(f"/o/acme/admin/members/{member.pk}/role/",
                                 {"role": "manager"}, follow=True)
    assert response.status_code == 200
    assert f"{cast.member.email} is now Manager." in response.content.decode()
    assert Membership.objects.get(pk=member.pk).role == Role.MANAGER
    event = last_event(cast.org)
    assert event.type == "membership.role_changed"
    assert event.data == {"before": "member", "after": "manager"}
    assert event.actor_user == cast.admin


@pytest.mark.parametrize("role", ["owner", "", "admin\x00", "x" * 1_000_000])
def test_an_unknown_role_is_refused_with_a_clear_message(cast, admin_portal, role):
    member = cast.membership(cast.member)
    before = AuditEvent.objects.for_org(cast.org).count()
    response = admin_portal.post(f"/o/acme/admin/members/{member.pk}/role/", {"role": role})
    assert response.status_code == 400
    assert "Choose one of the roles" in response.content.decode()
    assert Membership.objects.get(pk=member.pk).role == Role.MEMBER
    assert AuditEvent.objects.for_org(cast.org).count() == before


def test_the_last_admin_cannot_be_demoted_and_sees_why(cast, admin_portal):
    admin = cast.membership(cast.admin)
    response = admin_portal.post(f"/o/acme/admin/members/{admin.pk}/role/", {"role": "member"})
    assert response.status_code == 409
    assert "at least one admin" in response.content.decode()
    assert Membership.objects.get(pk=admin.pk).role == Role.ADMIN


def test_the_last_admin_cannot_be_removed_and_sees_the_services_message(cast, admin_portal):
    admin = cast.membership(cast.admin)
    body = admin_portal.get("/o/acme/admin/members/").content.decode()
    assert "Only admin" in body
    response = admin_portal.post(f"/o/acme/admin/members/{admin.pk}/remove/")
    assert response.status_code == 409
    assert "The last admin cannot be removed" in response.content.decode()
    assert Membership.objects.filter(pk=admin.pk).exists()


def test_removing_a_member_is_audited_and_they_lose_access(cast, admin_portal):
    member = cast.membership(cast.member)
    response = admin_portal.post(f"/o/acme/admin/members/{member.pk}/remove/", follow=True)
    assert f"{cast.member.email} was removed from Acme." in response.content.decode()
    assert not Membership.objects.filter(pk=member.pk).exists()
    event = last_event(cast.org)
    assert event.type == "membership.removed" and event.target_label == cast.member.email
    gone = Client()
    gone.force_login(cast.member)
    assert gone.get("/o/acme/tokens/").status_code == 404


def test_an_admin_who_demotes_themselves_lands_on_the_overview(cast, admin_portal):
    other = cast.membership(cast.manager)
    admin_portal.post(f"/o/acme/admin/members/{other.pk}/role/", {"role": "admin"})
    me = cast.membership(cast.admin)
    response = admin_portal.post(f"/o/acme/admin/members/{me.pk}/role/", {"role": "member"})
    assert response.status_code == 302 and response["Location"] == "/o/acme/"


def test_a_manager_cannot_change_roles(cast):
    client = Client()
    client.force_login(cast.manager)
    member = cast.membership(cast.member)
    assert client.post(f"/o/acme/admin/members/{member.pk}/role/",
                       {"role": "admin"}).status_code == 403
    assert client.post(f"/o/acme/admin/members/{member.pk}/remove/").status_code == 403
    assert Membership.objects.get(pk=member.pk).role == Role.MEMBER


def test_project_grants_are_shown_and_saved_per_project(cast, admin_portal):
    second = ProjectFactory(organization=cast.org, key="WEB", name="Website")
    po = cast.membership(cast.product_owner)
    url = f"/o/acme/admin/members/{po.pk}/"
    body = admin_portal.get(url).content.decode()
    assert "PAY · Payments" in body and "WEB · Website" in body
    assert "GLX" not in body  # another organization's project
    response = admin_portal.post(url, {f"project_{cast.project.pk.hex}": ["approve"],
                                       f"project_{second.pk.hex}": ["view"]})
    assert response.status_code == 302
    assert cast.product_owner.has_perm("tickets.approve_project", cast.project)
    assert cast.product_owner.has_perm("tickets.view_project", cast.project)
    assert cast.product_owner.has_perm("tickets.view_project", second)
    assert not cast.product_owner.has_perm("tickets.approve_project", second)
    assert last_event(cast.org).type == "project.grants_changed"
    body = admin_portal.get(url).content.decode()
    assert f'value="approve" id="id_project_{cast.project.pk.hex}_1" checked' in body
    assert f'value="view" id="id_project_{second.pk.hex}_0" checked' in body
    assert f'value="approve" id="id_project_{second.pk.hex}_1">' in body

    # Unticking everything takes the grants away again.
    admin_portal.post(url, {})
    assert not cast.product_owner.has_perm("tickets.view_project", cast.project)


def test_a_bad_grant_value_is_a_form_error_and_nothing_changes(cast, admin_portal):
    po = cast.membership(cast.product_owner)
    url = f"/o/acme/admin/members/{po.pk}/"
    response = admin_portal.post(url, {f"project_{cast.project.pk.hex}": ["view", "owner"]})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not cast.product_owner.has_perm("tickets.view_project", cast.project)

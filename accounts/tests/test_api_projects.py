"""Projects through the API: visibility by grants, creation, grants, and a flat query count."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from accounts.models import Membership
from tests.factories import ProjectFactory
from tests.fixtures import last_event, token_client
from tickets.models import Project

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/projects"


def test_a_member_sees_only_projects_granted_to_them(cast) -> None:
    hidden = ProjectFactory(organization=cast.org, key="HID")
    assign_perm("tickets.view_project", cast.member, cast.project)
    client = token_client(cast.org, cast.member, ["read"])
    keys = [row["key"] for row in client.get(f"{BASE}/").json()["results"]]
    assert keys == ["PAY"]
    assert client.get(f"{BASE}/{hidden.key}/").status_code == 404
    assert client.get(f"{BASE}/PAY/").json()["can_approve"] is False


def test_a_manager_sees_every_project_of_the_organization_and_none_of_another(cast) -> None:
    ProjectFactory(organization=cast.org, key="OPS")
    client = token_client(cast.org, cast.manager, ["read"])
    keys = [row["key"] for row in client.get(f"{BASE}/").json()["results"]]
    assert keys == ["OPS", "PAY"]
    assert client.get(f"{BASE}/GLX/").status_code == 404


@pytest.mark.parametrize("count", [2, 20])
def test_listing_projects_takes_the_same_queries_however_many_there_are(
    cast, django_assert_num_queries, count: int
) -> None:
    for index in range(count - 1):
        project = ProjectFactory(organization=cast.org, key=f"K{index:03d}")
        assign_perm("tickets.view_project", cast.member, project)
    assign_perm("tickets.view_project", cast.member, cast.project)
    client = token_client(cast.org, cast.member, ["read"])
    client.get(f"{BASE}/")  # records last_used_at once, outside the count
    # token, membership with organization, the member's user for the grants, the page
    with django_assert_num_queries(4):
        response = client.get(f"{BASE}/")
    assert len(response.json()["results"]) == count


def test_an_admin_creates_a_project_and_it_is_audited(cast) -> None:
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.post(f"{BASE}/", {"key": "NEW", "name": "New thing"}, format="json")
    assert response.status_code == 201, response.json()
    assert Project.objects.for_org(cast.org).filter(key="NEW").exists()
    assert last_event(cast.org).type == "project.created"


def test_a_taken_project_key_answers_409(cast) -> None:
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.post(f"{BASE}/", {"key": "PAY", "name": "Again"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"key": ["taken"]}


def test_a_product_owner_cannot_create_projects(cast) -> None:
    client = token_client(cast.org, cast.product_owner, ["write"])
    response = client.post(f"{BASE}/", {"key": "NOPE", "name": "x"}, format="json")
    assert response.status_code == 403
    assert not Project.objects.filter(key="NOPE").exists()


def test_granting_approve_lets_a_product_owner_see_and_decide(cast) -> None:
    membership = cast.membership(cast.product_owner)
    admin = token_client(cast.org, cast.admin, ["admin"])
    response = admin.put(f"{BASE}/PAY/grants/{membership.pk}/", {"grants": ["approve"]},
                         format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["grants"] == ["approve", "view"]
    event = last_event(cast.org)
    assert event.type == "project.grants_changed"
    assert event.data["after"] == ["approve", "view"]
    owner = token_client(cast.org, cast.product_owner, ["read"])
    assert owner.get(f"{BASE}/PAY/").json()["can_approve"] is True
    revoked = admin.put(f"{BASE}/PAY/grants/{membership.pk}/", {"grants": []}, format="json")
    assert revoked.json()["grants"] == []
    assert owner.get(f"{BASE}/PAY/").status_code == 404


def test_grants_on_another_organizations_project_or_member_answer_404(cast) -> None:
    admin = token_client(cast.org, cast.admin, ["admin"])
    member = cast.membership(cast.member)
    assert admin.put(f"{BASE}/GLX/grants/{member.pk}/", {"grants": ["view"]},
                     format="json").status_code == 404
    foreign = Membership.objects.get(organization=cast.other_org, user=cast.outsider)
    assert admin.put(f"{BASE}/PAY/grants/{foreign.pk}/", {"grants": ["view"]},
                     format="json").status_code == 404
    assert not cast.outsider.has_perm("tickets.view_project", cast.project)

"""Who may open each console page: login redirect, 404 for outsiders, 403 without the role."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Membership
from tests.fixtures import page_as_compared, portal_client

# URL name → the roles that may open it
PAGES = {
    "console-members": {"admin"},
    "console-member": {"admin"},
    "console-invitations": {"admin"},
    "console-sso": {"admin"},
    "console-tokens": {"admin", "product_owner", "manager", "member"},
    "console-audit": {"admin", "manager"},
    "console-audit-csv": {"admin", "manager"},
}



def url_of(name: str, cast, org_slug: str = "acme") -> str:
    kwargs: dict[str, object] = {"org": org_slug}
    if name == "console-member":
        kwargs["membership_id"] = Membership.objects.get(organization=cast.org,
                                                         user=cast.member).pk
    return reverse(name, kwargs=kwargs)


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(cast, name) -> None:
    url = url_of(name, cast)
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert "next=" in response["Location"]


@pytest.mark.parametrize("name", PAGES)
def test_an_outsider_gets_the_same_404_as_for_a_missing_organization(cast, name) -> None:
    client = portal_client(cast.outsider)
    foreign_url, missing_url = url_of(name, cast), url_of(name, cast, org_slug="no-such-org")
    foreign, missing = client.get(foreign_url), client.get(missing_url)
    assert foreign.status_code == missing.status_code == 404
    assert page_as_compared(foreign, foreign_url) == page_as_compared(missing, missing_url)
    assert b"Acme" not in foreign.content


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("role", ["admin", "product_owner", "manager", "member"])
def test_each_role_sees_only_the_pages_its_capabilities_allow(cast, name, role) -> None:
    response = portal_client(getattr(cast, role)).get(url_of(name, cast))
    expected = 200 if role in PAGES[name] else 403
    assert response.status_code == expected


def test_every_console_page_shows_the_organization_navigation(cast) -> None:
    client = portal_client(cast.admin)
    for name in PAGES:
        if name == "console-audit-csv":
            continue
        body = client.get(url_of(name, cast)).content.decode()
        assert 'aria-label="Organization"' in body, name
        assert "Acme" in body and "Globex" not in body, name


@pytest.mark.parametrize("path", [
    "admin/members/00000000-0000-0000-0000-000000000000/",
    "admin/members/00000000-0000-0000-0000-000000000000/role/",
    "admin/members/00000000-0000-0000-0000-000000000000/remove/",
    "admin/invitations/00000000-0000-0000-0000-000000000000/revoke/",
    "tokens/00000000-0000-0000-0000-000000000000/revoke/",
])
def test_unknown_ids_answer_404_not_500(cast, path) -> None:
    client = portal_client(cast.admin)
    assert client.post(f"/o/acme/{path}", {"role": "member"}).status_code == 404


def test_another_organizations_member_cannot_be_reached_through_this_one(cast) -> None:
    foreign = Membership.objects.get(organization=cast.other_org, user=cast.outsider)
    client = portal_client(cast.admin)
    assert client.get(f"/o/acme/admin/members/{foreign.pk}/").status_code == 404
    assert client.post(f"/o/acme/admin/members/{foreign.pk}/remove/").status_code == 404
    assert Membership.objects.filter(pk=foreign.pk).exists()


# Navigation link → the page it opens (its view's required_capability decides who may).
NAV = {"Members": "console-members", "Invitations": "console-invitations",
       "SSO": "console-sso", "Model endpoints": "console-endpoints",
       "Policies": "console-policies", "Cost report": "reports-costs",
       "Audit log": "console-audit"}


@pytest.mark.parametrize("role", ["admin", "product_owner", "manager", "member"])
def test_the_navigation_shows_a_link_exactly_when_the_role_may_open_its_page(cast,
                                                                            role) -> None:
    user = {"admin": cast.admin, "product_owner": cast.product_owner, "manager": cast.manager,
            "member": cast.member}[role]
    client = portal_client(user)
    nav = client.get(reverse("org-overview", kwargs={"org": "acme"})).content.decode()
    for label, name in NAV.items():
        opens = client.get(reverse(name, kwargs={"org": "acme"})).status_code == 200
        assert (f"{label}</a>" in nav) == opens, (role, label, opens)

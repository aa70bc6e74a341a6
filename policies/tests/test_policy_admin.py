"""The Django admin of policies for platform operators: lists open, rows are read only."""

from __future__ import annotations

import pytest

from accounts.models import User
from haao.audit import Actor
from policies.models import Policy, PolicyVersion
from policies.services import policy_update

pytestmark = pytest.mark.django_db
BASE = "/platform-admin/policies"


@pytest.fixture
def operator_client(client, db):
    operator = User.objects.create_superuser("operator@example.test", "x-very-long-password")
    client.force_login(operator)
    return client


@pytest.fixture
def changed(cast) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"retry_budget": 5, "allowed_paths": ["src/**"]})
    policy_update(organization=cast.org, actor=Actor.of(cast.admin), project=cast.project,
                  changes={"wip_limit": 2})


def test_the_policy_list_shows_organization_project_and_the_rules_set(operator_client, cast,
                                                                      changed) -> None:
    page = operator_client.get(f"{BASE}/policy/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "allowed_paths, retry_budget" in html and "wip_limit" in html
    assert "PAY" in html and "Acme" in html


def test_a_policy_opens_read_only_with_its_values(operator_client, cast, changed) -> None:
    policy = Policy.objects.get(project=None)
    url = f"{BASE}/policy/{policy.pk}/change/"
    page = operator_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "&quot;retry_budget&quot;: 5" in html and 'name="_save"' not in html
    assert operator_client.post(url, {"values": "{}"}).status_code == 403
    assert operator_client.post(f"{BASE}/policy/{policy.pk}/delete/",
                                {"post": "yes"}).status_code == 403
    assert operator_client.get(f"{BASE}/policy/add/").status_code == 403
    policy.refresh_from_db()
    assert policy.values["retry_budget"] == 5


def test_versions_are_listed_and_cannot_be_added_changed_or_deleted(operator_client, cast,
                                                                    changed) -> None:
    page = operator_client.get(f"{BASE}/policyversion/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "project PAY" in html and "organization acme" in html
    version = PolicyVersion.objects.get(number=1)
    detail = operator_client.get(f"{BASE}/policyversion/{version.pk}/change/")
    assert detail.status_code == 200 and "&quot;retry_budget&quot;" in detail.content.decode()
    assert operator_client.get(f"{BASE}/policyversion/add/").status_code == 403
    assert operator_client.post(f"{BASE}/policyversion/{version.pk}/delete/",
                                {"post": "yes"}).status_code == 403
    assert PolicyVersion.objects.count() == 2

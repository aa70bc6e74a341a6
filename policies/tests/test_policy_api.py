"""The policy REST API: token scopes, every rule with its source, bad values a 400 naming the
field with nothing stored, project overrides, versions and "try it"."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from haao.audit import Actor, seal
from haao.models import AuditEvent
from policies import rules
from policies.models import PolicyVersion
from policies.selectors import effective_policy, policy_row_values
from policies.services import policy_update
from tests.fixtures import token_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/orgs/acme/policy/"
AWS_KEY = "AKIAQ3EGRXMPL7T5WZ4K"


@pytest.fixture
def admin(cast) -> APIClient:
    return token_client(cast.org, cast.admin, ["admin"])


def project_url(cast, ident: str | None = None) -> str:
    return f"/api/v1/orgs/acme/projects/{ident or cast.project.key}/policy/"


def stored(cast) -> tuple[Any, ...]:
    return (policy_row_values(organization=cast.org, project=None),
            policy_row_values(organization=cast.org, project=cast.project),
            PolicyVersion.objects.count(),
            AuditEvent.objects.filter(type="policy.changed").count())


def test_a_read_token_gets_every_rule_with_value_source_and_default(cast) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"ticket_cloud_cap_usd": "2.5"})
    response = token_client(cast.org, cast.admin, ["read"]).get(URL)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 1 and body["redaction"] == "always"
    assert set(body["rules"]) == {rule.name for rule in rules.RULES}
    assert body["rules"]["ticket_cloud_cap_usd"] == {"value": "2.50", "source": "organization",
                                                     "default": "5"}
    assert body["rules"]["monthly_cloud_cap_usd"]["value"] is None
    assert body["rules"]["retry_budget"] == {"value": 3, "source": "default", "default": 3}
    assert ".github/workflows/**" in body["rules"]["denied_paths"]["value"]


def test_scopes_read_can_get_write_cannot_patch_admin_can(cast) -> None:
    change = {"rules": {"retry_budget": 5}}
    for scopes in (["read"], ["write"]):
        client = token_client(cast.org, cast.admin, scopes)
        assert client.get(URL).status_code == 200
        response = client.patch(URL, change, format="json")
        assert response.status_code == 403 and "scope" in response.json()["error"]["message"]
    member = token_client(cast.org, cast.member, ["admin"])
    assert member.get(URL).status_code == 403
    assert member.patch(URL, change, format="json").status_code == 403
    assert stored(cast) == ({}, {}, 0, 0)
    response = token_client(cast.org, cast.admin, ["admin"]).patch(URL, change, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["rules"]["retry_budget"]["value"] == 5
    assert response.json()["version"] == 1


def test_another_organization_gets_404(cast) -> None:
    outsider = token_client(cast.other_org, cast.outsider, ["admin"])
    for url in (URL, f"{URL}versions/", project_url(cast)):
        assert outsider.get(url).status_code == 404
    assert outsider.patch(URL, {"rules": {"retry_budget": 5}}, format="json").status_code == 404
    assert outsider.post(f"{URL}try/", {"path": "a.py"}, format="json").status_code == 404
    mine = token_client(cast.org, cast.admin, ["admin"])
    assert mine.get(project_url(cast, cast.other_project.key)).status_code == 404
    assert mine.get(project_url(cast, str(cast.other_project.pk))).status_code == 404
    assert stored(cast) == ({}, {}, 0, 0)


def test_an_admin_patches_rules_and_inherits_them_again(cast, admin) -> None:
    response = admin.patch(URL, {"rules": {"retry_budget": 6, "allowed_paths": ["src/**"],
                                           "monthly_cloud_cap_usd": "100"}}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()["rules"]
    assert body["monthly_cloud_cap_usd"] == {"value": "100.00", "source": "organization",
                                             "default": None}
    assert body["allowed_paths"]["value"] == ["src/**"]
    event = AuditEvent.objects.get(type="policy.changed")
    assert event.data["changes"]["retry_budget"] == [None, 6]
    response = admin.patch(URL, {"inherit": ["retry_budget"]}, format="json")
    assert response.json()["rules"]["retry_budget"]["source"] == "default"
    assert response.json()["version"] == 2


@pytest.mark.parametrize(("field", "change"), [
    ("allowed_paths", {"allowed_paths": ["src/**", "src/[a]"]}),
    ("ticket_cloud_cap_usd", {"ticket_cloud_cap_usd": "-1"}),
    # A JSON number with a fraction is not exact (0.05 is 0.05000000000000000277…).
    ("requirement_cloud_cap_usd", {"requirement_cloud_cap_usd": 0.05}),
    ("retry_budget", {"retry_budget": -1}),
    ("retry_budget", {"retry_budget": "3"}),
    ("allowed_programs", {"allowed_programs": ["pytest", "foo-runner"]}),
    ("allowed_programs", {"allowed_programs": ["bash"]}),
    ("sandbox_network_reason", {"sandbox_network": True}),
    ("no_such_rule", {"no_such_rule": 1}),
    ("denied_paths", {"denied_paths": "src/**"}),
    ("denied_paths", {"denied_paths": ["src/a\x00b"]}),
    ("denied_paths", {"denied_paths": ["x" * 1024 * 1024]}),
    ("sandbox_network_reason", {"sandbox_network_reason": "x" * 1024 * 1024}),
    ("sandbox_network_reason", {"sandbox_network_reason": "why\x00"}),
    ("audit_mode", {"audit_mode": ["all"]}),
])
def test_a_bad_value_answers_400_naming_the_field_and_stores_nothing(cast, admin, field,
                                                                     change) -> None:
    before = stored(cast)
    # A valid change alongside is not stored either.
    response = admin.patch(URL, {"rules": {"wip_limit": 5, **change}}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_policy" and field in error["details"]
    assert field in error["message"]
    assert len(response.content) < 10_000  # the input is not echoed back
    assert stored(cast) == before


@pytest.mark.parametrize(("field", "body"), [
    ("colour", {"rules": {"wip_limit": 5}, "colour": "blue"}),
    ("rules", {"rules": ["wip_limit"]}),
    ("inherit", {"inherit": "wip_limit"}),
    ("inherit", {"inherit": ["no_such_rule"]}),
    ("rules", {}),
])
def test_a_malformed_body_answers_400_naming_the_field(cast, admin, field, body) -> None:
    response = admin.patch(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert stored(cast) == ({}, {}, 0, 0)


def test_a_project_override_by_key_or_id_and_inherit(cast, admin) -> None:
    policy_update(organization=cast.org, actor=Actor.of(cast.admin), changes={"wip_limit": 4})
    response = admin.patch(project_url(cast), {"rules": {"retry_budget": 9,
                                                         "denied_paths": ["secrets/**"]}},
                           format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["project"] == "PAY"
    assert body["rules"]["retry_budget"] == {"value": 9, "source": "project", "default": 3,
                                             "override": 9, "overridden": True}
    assert body["rules"]["wip_limit"] == {"value": 4, "source": "organization", "default": 3,
                                          "override": None, "overridden": False}
    denied = body["rules"]["denied_paths"]
    assert denied["source"] == "default + project" and denied["override"] == ["secrets/**"]
    assert "secrets/**" in denied["value"] and ".git/**" in denied["value"]
    by_id = admin.get(project_url(cast, str(cast.project.pk)))
    assert by_id.status_code == 200 and by_id.json()["rules"] == body["rules"]
    assert policy_row_values(organization=cast.org, project=None) == {"wip_limit": 4}
    response = admin.patch(project_url(cast), {"inherit": ["retry_budget"]}, format="json")
    assert response.json()["rules"]["retry_budget"]["source"] == "default"
    assert policy_row_values(organization=cast.org, project=cast.project) == {
        "denied_paths": ["secrets/**"]}
    bad = admin.patch(project_url(cast), {"rules": {"wip_limit": 0}}, format="json")
    assert bad.status_code == 400 and "wip_limit" in bad.json()["error"]["details"]
    assert admin.get(project_url(cast, "NOPE")).status_code == 404


def test_versions_are_listed_newest_first_with_scope_changes_and_author(cast, admin) -> None:
    admin.patch(URL, {"rules": {"retry_budget": 5}}, format="json")
    admin.patch(project_url(cast), {"rules": {"wip_limit": 2}}, format="json")
    response = token_client(cast.org, cast.admin, ["read"]).get(f"{URL}versions/")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [v["number"] for v in results] == [2, 1]
    assert results[0]["scope"] == "project PAY" and results[0]["project"] == "PAY"
    assert results[0]["changes"] == {"wip_limit": [None, 2]}
    assert results[1]["project"] is None and results[1]["author"]
    paged = admin.get(f"{URL}versions/?page_size=1")
    assert len(paged.json()["results"]) == 1 and paged.json()["next"]


def test_try_answers_the_decisions_of_the_policy(cast, admin) -> None:
    response = admin.post(f"{URL}try/", {
        "path": ".github/workflows/ci.yml", "command": ["curl", "-s", "https://example.com"],
        "payload": f"key {AWS_KEY} here"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["path"]["allowed"] is False and body["path"]["rule"] == "denied_paths"
    assert body["command"]["allowed"] is False and body["command"]["rule"] == "allowed_programs"
    assert body["payload"]["redactions"] == 1 and AWS_KEY not in body["payload"]["sent"]
    allowed = admin.post(f"{URL}try/", {"path": "src/app.py", "command": ["pytest", "-q"]},
                         format="json").json()
    assert allowed["path"]["allowed"] is True and allowed["command"]["allowed"] is True
    assert "payload" not in allowed


def test_try_for_a_project_uses_its_override(cast, admin) -> None:
    admin.patch(project_url(cast), {"rules": {"allowed_programs": ["make"]}}, format="json")
    project = admin.post(f"{project_url(cast)}try/", {"command": ["pytest"]}, format="json")
    assert project.json()["command"]["allowed"] is False
    org = admin.post(f"{URL}try/", {"command": ["pytest"]}, format="json")
    assert org.json()["command"]["allowed"] is True


@pytest.mark.parametrize(("field", "body"), [
    ("command", {"command": "pytest -q"}),
    ("command", {"command": [1, 2]}),
    ("path", {"path": ["a"]}),
    ("payload", {"payload": {"a": 1}}),
    ("path", {}),
    ("extra", {"path": "a.py", "extra": 1}),
])
def test_try_refuses_bad_types_naming_the_field(cast, admin, field, body) -> None:
    response = admin.post(f"{URL}try/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]


def test_try_needs_the_admin_scope_and_the_capability(cast) -> None:
    body = {"path": "a.py"}
    assert token_client(cast.org, cast.admin, ["write"]).post(
        f"{URL}try/", body, format="json").status_code == 403
    assert token_client(cast.org, cast.manager, ["admin"]).post(
        f"{URL}try/", body, format="json").status_code == 403
    assert effective_policy(organization=cast.org).version == 0


# --- Endpoints: whether one is self-hosted decides what data residency allows ---------------

ENDPOINTS = "/api/v1/orgs/acme/endpoints/"
LOCAL = {"name": "GPU box", "kind": "openai_compatible", "flavor": "vllm",
         "base_url": "http://93.184.215.14:8000/v1", "model": "qwen2.5-coder-32b",
         "role": "coder"}


def test_self_hosted_round_trips_through_the_endpoints_api(cast, admin) -> None:
    created = admin.post(ENDPOINTS, LOCAL, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["self_hosted"] is True
    url = f"{ENDPOINTS}{created.json()['id']}/"
    changed = admin.patch(url, {"self_hosted": False}, format="json")
    assert changed.status_code == 200 and changed.json()["self_hosted"] is False
    assert admin.get(url).json()["self_hosted"] is False
    gateway = admin.post(ENDPOINTS, {"name": "Claude via our gateway", "kind": "anthropic",
                                     "base_url": "http://93.184.215.14", "role": "tech_lead",
                                     "model": "claude-sonnet-4-5", "self_hosted": True},
                         format="json")
    assert gateway.status_code == 201 and gateway.json()["self_hosted"] is True


def test_anthropics_own_api_cannot_be_called_self_hosted(cast, admin) -> None:
    from agents.models import InferenceEndpoint

    response = admin.post(ENDPOINTS, {"name": "Claude", "kind": "anthropic", "role": "tech_lead",
                                      "model": "claude-sonnet-4-5", "self_hosted": True},
                          format="json")
    assert response.status_code == 400, response.content
    assert "self_hosted" in response.json()["error"]["details"]
    bad_type = admin.post(ENDPOINTS, {**LOCAL, "self_hosted": "perhaps"}, format="json")
    assert bad_type.status_code == 400 and "self_hosted" in bad_type.json()["error"]["details"]
    assert not InferenceEndpoint.objects.exists()


def test_an_unpaired_surrogate_answers_400_naming_the_field_and_stores_nothing(cast,
                                                                              admin) -> None:
    before = stored(cast)
    for body in ('{"rules": {"sandbox_network_reason": "why \\ud800"}}',
                 '{"rules": {"denied_paths": ["ok/**", "\\udc00/**"]}}',
                 '{"rules": {"\\ud800": 1}}'):
        response = admin.generic("PATCH", URL, body, content_type="application/json")
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["message"].startswith("rules."), error
        assert "unpaired surrogate" in error["message"]
    response = admin.generic("PATCH", URL, '{"rules": {"denied_paths": ["ok/**", "\\udc00"]}}',
                             content_type="application/json")
    assert "rules.denied_paths[1]" in response.json()["error"]["details"]
    assert stored(cast) == before


def test_a_policy_stored_with_an_unpaired_surrogate_still_reads(cast, admin) -> None:
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL's jsonb never stored unpaired surrogates")
    # As stored (on SQLite) before the API refused it.
    policy_update(organization=cast.org, actor=Actor.of(cast.admin),
                  changes={"sandbox_network_reason": "why \ud800"})
    seal(cast.org.pk)  # the writers' commits seal their events
    reader = token_client(cast.org, cast.admin, ["read"])
    policy = reader.get(URL)
    assert policy.status_code == 200
    assert policy.json()["rules"]["sandbox_network_reason"]["value"] == "why \ufffd"
    versions = reader.get(f"{URL}versions/")
    assert versions.status_code == 200
    assert versions.json()["results"][0]["changes"]["sandbox_network_reason"] == [
        None, "why \ufffd"]
    events = reader.get("/api/v1/orgs/acme/audit-events/", {"type": "policy.changed"})
    assert events.status_code == 200
    assert "why \ufffd" in str(events.json()["results"][0]["data"])


def test_json_nested_too_deeply_answers_400(cast, admin) -> None:
    before = stored(cast)
    body = '{"rules": {"denied_paths": ' + "[" * 10_000 + "]" * 10_000 + "}}"
    response = admin.generic("PATCH", URL, body, content_type="application/json")
    assert response.status_code == 400, response.content[:500]
    assert "nested too deeply" in response.json()["error"]["message"]
    response = admin.generic("PATCH", URL, '{"rules": {"denied_paths": '
                             + "[" * 100 + "]" * 100 + "}}", content_type="application/json")
    assert response.status_code == 400
    assert "rules.denied_paths" in response.json()["error"]["message"]
    assert stored(cast) == before


def test_policy_changes_are_read_only_by_those_who_may_read_the_policy(cast, admin) -> None:
    from django.test import Client

    from tickets import services as ticket_services

    ticket_services.project_grant_set(organization=cast.org, project=cast.project,
                                      user=cast.member, grants={"view"}, actor=cast.admin)
    admin.patch(project_url(cast), {"rules": {"denied_paths": ["secret-plan/**"]}},
                format="json")
    seal(cast.org.pk)  # the writers' commits seal their events
    assert token_client(cast.org, cast.manager, ["read"]).get(URL).status_code == 403

    def readers(user) -> list[str]:
        browser = Client()
        browser.force_login(user)
        api = token_client(cast.org, user, ["read"])
        answers = [browser.get("/o/acme/admin/audit/"), browser.get("/o/acme/admin/audit.csv"),
                   api.get("/api/v1/orgs/acme/audit-events/"),
                   api.get("/api/v1/orgs/acme/projects/PAY/events/")]
        return [b"".join(r.streaming_content).decode() if r.streaming else r.content.decode()
                for r in answers if r.status_code == 200]

    manager_texts = readers(cast.manager)
    assert len(manager_texts) == 4  # a manager reads the audit log, just not policy changes
    for text in manager_texts:
        assert "secret-plan" not in text and "policy.changed" not in text
    member_texts = readers(cast.member)
    assert len(member_texts) == 1  # the project's events: no audit log for members
    assert "secret-plan" not in member_texts[0]
    admin_texts = readers(cast.admin)
    assert len(admin_texts) == 4 and all("secret-plan" in text for text in admin_texts)

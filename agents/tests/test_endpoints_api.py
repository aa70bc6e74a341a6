"""The endpoints REST API: admins only, the key write-only, bad input a clear 400."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents import ledger, services
from agents.models import InferenceEndpoint
from haao.models import AuditEvent
from tests.fixtures import token_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/orgs/acme/endpoints/"
VALID = {"name": "GPU box", "kind": "openai_compatible", "flavor": "vllm",
         "base_url": "http://93.184.215.14:8000/v1", "model": "qwen2.5-coder-32b",
         "role": "coder", "api_key": "sk-local-SECRET", "max_concurrency": 4}


@pytest.fixture
def admin(cast) -> APIClient:
    return token_client(cast.org, cast.admin, ["admin"])


def existing(cast) -> InferenceEndpoint:
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-SECRET",
        values={"name": "Claude", "kind": "anthropic", "base_url": "http://93.184.215.14",
                "model": "claude-sonnet-4-5", "role": "tech_lead"})


def snapshot(cast) -> list[Any]:
    return [sorted(InferenceEndpoint.objects.for_org(cast.org).values_list(
                "id", "name", "base_url", "model", "price_input", "enabled", "updated_at")),
            AuditEvent.objects.for_org(cast.org).count()]


def test_an_admin_creates_an_endpoint_and_never_gets_the_key_back(cast, admin) -> None:
    response = admin.post(URL, VALID, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["has_api_key"] is True and "api_key" not in body
    assert body["price_input"] == "0.000000" and body["price_source"] == "endpoint"
    assert body["health_status"] == "unknown"
    assert b"SECRET" not in response.content
    listed = admin.get(URL)
    assert listed.status_code == 200 and b"SECRET" not in listed.content
    assert [e["name"] for e in listed.json()["results"]] == ["GPU box"]
    event = AuditEvent.objects.get(type="endpoint.created")
    assert event.data["has_api_key"] is True and "SECRET" not in json.dumps(event.data)
    stored = InferenceEndpoint.objects.get()
    assert stored.reveal_api_key() == "sk-local-SECRET"


def test_an_anthropic_endpoint_follows_the_price_table_by_default(cast, admin,
                                                                   monkeypatch) -> None:
    # No DNS in tests: api.anthropic.com "resolves" to a public documentation-free address.
    monkeypatch.setattr("haao.ssrf.socket.getaddrinfo",
                        lambda *a, **k: [(2, 1, 6, "", ("160.79.104.10", 443))])
    response = admin.post(URL, {"name": "Claude", "kind": "anthropic", "model":
                                "claude-sonnet-4-5", "role": "tech_lead"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["base_url"] == "https://api.anthropic.com" and body["flavor"] == ""
    assert body["price_input"] is None and body["price_source"] == "table"
    assert body["has_api_key"] is False


def test_an_unknown_cloud_model_needs_prices(cast, admin) -> None:
    before = snapshot(cast)
    response = admin.post(URL, {"name": "C", "kind": "anthropic", "model": "claude-next",
                                "role": "tech_lead"}, format="json")
    assert response.status_code == 400
    assert "price_input" in response.json()["error"]["details"]
    assert snapshot(cast) == before


def test_a_blank_key_keeps_the_stored_one_and_clear_removes_it(cast, admin) -> None:
    endpoint = existing(cast)
    url = f"{URL}{endpoint.pk}/"
    response = admin.patch(url, {"api_key": "", "max_concurrency": 8}, format="json")
    assert response.status_code == 200 and response.json()["has_api_key"] is True
    assert InferenceEndpoint.objects.get().reveal_api_key() == "sk-ant-SECRET"
    response = admin.patch(url, {"api_key": "sk-ant-NEW"}, format="json")
    assert InferenceEndpoint.objects.get().reveal_api_key() == "sk-ant-NEW"
    response = admin.patch(url, {"clear_api_key": True}, format="json")
    assert response.json()["has_api_key"] is False
    changes = [e.data["changes"] for e in AuditEvent.objects.filter(type="endpoint.updated")]
    assert changes[1]["api_key"]["after"] == "replaced" and changes[2]["api_key"]["after"] == (
        "cleared")
    assert "sk-ant" not in json.dumps(changes)


def test_a_name_taken_in_the_organization_is_a_conflict(cast, admin) -> None:
    existing(cast)
    response = admin.post(URL, {**VALID, "name": "Claude"}, format="json")
    assert response.status_code == 409 and "name" in response.json()["error"]["details"]


@pytest.mark.parametrize(("field", "value", "text"), [
    ("base_url", "http://user:pass@93.184.215.14/", "password"),
    ("base_url", "http://169.254.169.254/latest/", "link-local"),
    ("base_url", "http://10.0.0.5:1234/v1", "private"),
    ("base_url", "http://localhost:1234/v1", "loopback"),
    ("base_url", "ftp://93.184.215.14/", "http"),
    ("price_input", "-0.01", ""),
    ("price_output", "1.0000001", ""),
    ("max_concurrency", 65, ""),
    ("max_concurrency", 0, ""),
    ("dedicated_queue", "Bad Queue!", ""),
    ("name", "a\x00b", ""),
    ("model", "x" * (1024 * 1024), ""),
    ("api_key", "has space", ""),
])
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(cast, admin, field, value,
                                                                text) -> None:
    endpoint = existing(cast)
    before = snapshot(cast)
    for method, url in (("post", URL), ("patch", f"{URL}{endpoint.pk}/")):
        body = {**VALID, field: value} if method == "post" else {field: value}
        response = getattr(admin, method)(url, body, format="json")
        assert response.status_code == 400, (method, response.content[:300])
        error = response.json()["error"]
        assert field in error["details"], (method, error)
        assert text in error["message"]
        assert len(response.content) < 10_000
    assert snapshot(cast) == before


@pytest.mark.parametrize("body", [{"enabled": None}, {"kind": 1}, {"surprise": 1},
                                  {"clear_api_key": True, "api_key": "x"}, {"name": ""}])
def test_bad_updates_are_refused_naming_the_field(cast, admin, body) -> None:
    endpoint = existing(cast)
    before = snapshot(cast)
    response = admin.patch(f"{URL}{endpoint.pk}/", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["details"]) & (set(body) | {"api_key"})
    assert snapshot(cast) == before


def test_malformed_bodies_on_update_and_check_answer_4xx(cast, admin) -> None:
    endpoint = existing(cast)
    before = snapshot(cast)
    for body, content_type in (('{"name": ', "application/json"), ("[1]", "application/json"),
                               ("name=x", "text/plain")):
        response = admin.generic("PATCH", f"{URL}{endpoint.pk}/", body,
                                 content_type=content_type)
        assert response.status_code in (400, 415), response.content
    assert snapshot(cast) == before


def test_an_endpoint_with_the_allowlist_may_be_local(cast, admin, settings) -> None:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["localhost", "127.0.0.1"]
    response = admin.post(URL, {**VALID, "base_url": "http://localhost:1234/v1"}, format="json")
    assert response.status_code == 201, response.content


def test_delete_and_check(cast, admin, settings) -> None:
    endpoint = existing(cast)
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    admin.patch(f"{URL}{endpoint.pk}/", {"base_url": "http://127.0.0.1:9"}, format="json")
    checked = admin.post(f"{URL}{endpoint.pk}/check/")
    assert checked.status_code == 200 and checked.json()["health_status"] == "failing"
    assert admin.delete(f"{URL}{endpoint.pk}/").status_code == 204
    assert not InferenceEndpoint.objects.exists()
    assert AuditEvent.objects.filter(type="endpoint.deleted").count() == 1


def test_an_endpoint_with_calls_answers_409_on_delete(cast, admin) -> None:
    endpoint = existing(cast)
    ledger.model_call_record(organization=cast.org, endpoint=endpoint, role="audit",
                               outcome="ok", input_tokens=5)
    response = admin.delete(f"{URL}{endpoint.pk}/")
    assert response.status_code == 409 and "disable" in response.json()["error"]["message"]


def test_outsider_404_member_403_admin_200(cast) -> None:
    endpoint = existing(cast)
    detail = f"{URL}{endpoint.pk}/"
    outsider = token_client(cast.other_org, cast.outsider, ["admin"])
    signed_in = APIClient()
    signed_in.force_login(cast.outsider)
    for client in (outsider, signed_in):
        assert client.get(detail).status_code == 404
        assert client.get(URL).status_code == 404
    other = services.endpoint_create(
        organization=cast.other_org, actor=cast.outsider,
        values={"name": "theirs", "kind": "openai_compatible",
                "base_url": "http://93.184.215.14/", "model": "m", "role": "coder"})
    admin = token_client(cast.org, cast.admin, ["admin"])
    assert admin.get(f"{URL}{other.pk}/").status_code == 404
    assert admin.patch(f"{URL}{other.pk}/", {"name": "mine"}, format="json").status_code == 404
    for user in (cast.member, cast.manager, cast.product_owner):
        client = token_client(cast.org, user, ["admin"])
        assert client.get(URL).status_code == 403
        assert client.get(detail).status_code == 403
        assert client.patch(detail, {"enabled": False}, format="json").status_code == 403
    reader = token_client(cast.org, cast.admin, ["read"])
    assert reader.get(detail).status_code == 200
    assert reader.patch(detail, {"enabled": False}, format="json").status_code == 403
    assert admin.get(detail).status_code == 200


def test_a_dedicated_queue_another_organization_holds_cannot_be_claimed(cast, admin) -> None:
    services.endpoint_create(
        organization=cast.other_org, actor=cast.outsider,
        values={**{k: v for k, v in VALID.items() if k != "api_key"},
                "dedicated_queue": "gpu-1"})
    endpoint = existing(cast)
    before = snapshot(cast)
    created = admin.post(URL, {**VALID, "dedicated_queue": "gpu-1"}, format="json")
    changed = admin.patch(f"{URL}{endpoint.pk}/", {"dedicated_queue": "gpu-1"}, format="json")
    for response in (created, changed):
        assert response.status_code == 409, response.content[:300]
        assert "dedicated_queue" in response.json()["error"]["details"]
        assert "another organization" in response.json()["error"]["message"]
    assert snapshot(cast) == before
    # Its own endpoints may share a queue.
    assert admin.post(URL, {**VALID, "dedicated_queue": "acme-gpu"}, format="json"
                      ).status_code == 201
    assert admin.patch(f"{URL}{endpoint.pk}/", {"dedicated_queue": "acme-gpu"}, format="json"
                       ).status_code == 200

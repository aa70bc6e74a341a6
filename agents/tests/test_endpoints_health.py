"""Health checks call the endpoint over real HTTP and record what they found."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

from agents import health, services
from agents.models import HealthStatus, InferenceEndpoint
from haao.errors import ApplicationError
from haao.models import AuditEvent

pytestmark = [pytest.mark.django_db,
              pytest.mark.usefixtures("allow_loopback")]


class Stub:
    """A tiny model server on 127.0.0.1 that answers what the test tells it to."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {"object": "list", "data": [{"id": "local-model"}]}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.requests.append((self.command, self.path, headers,
                                      self.rfile.read(length)))
                payload = (stub.body if isinstance(stub.body, bytes)
                           else json.dumps(stub.body).encode())
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


def openai_endpoint(cast, url: str, **values: Any) -> InferenceEndpoint:
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key=values.pop("api_key", ""),
        values={"name": "Local coder", "kind": "openai_compatible", "flavor": "lm_studio",
                "base_url": url, "model": "local-model", "role": "coder", **values})


def test_a_healthy_openai_compatible_server_is_ok_with_its_latency(cast, stub) -> None:
    endpoint = openai_endpoint(cast, f"{stub.url}/v1", api_key="lm-key")
    checked = health.endpoint_check_health(endpoint=endpoint)
    assert checked.health_status == HealthStatus.OK, checked.health_error
    assert checked.health_latency_ms is not None and checked.health_checked_at
    method, path, headers, _ = stub.requests[0]
    assert (method, path) == ("GET", "/v1/models")
    assert headers["authorization"] == "Bearer lm-key"
    assert AuditEvent.objects.filter(type="endpoint.health_changed").count() == 1


def test_a_base_url_without_v1_still_reaches_the_models_list(cast, stub) -> None:
    health.endpoint_check_health(endpoint=openai_endpoint(cast, stub.url))
    assert stub.requests[0][1] == "/v1/models"


@pytest.mark.parametrize(("status", "body", "text"), [
    (500, {"error": "boom"}, "HTTP 500"),
    (200, b"<html>not json</html>", "did not answer JSON"),
    (200, {"models": []}, "without a `data` list"),
])
def test_a_broken_server_is_failing_with_the_reason(cast, stub, status, body, text) -> None:
    stub.status, stub.body = status, body
    checked = health.endpoint_check_health(endpoint=openai_endpoint(cast, stub.url))
    assert checked.health_status == HealthStatus.FAILING
    assert text in checked.health_error


def test_a_server_that_is_down_is_failing(cast) -> None:
    endpoint = openai_endpoint(cast, "http://127.0.0.1:9/v1")
    checked = health.endpoint_check_health(endpoint=endpoint, timeout=2)
    assert checked.health_status == HealthStatus.FAILING
    assert "Could not reach" in checked.health_error


def test_the_guard_runs_again_before_the_call(cast, stub) -> None:
    endpoint = openai_endpoint(cast, stub.url)
    with override_settings(HAAO_ENDPOINT_ALLOWLIST=[]):
        checked = health.endpoint_check_health(endpoint=endpoint)
    assert checked.health_status == HealthStatus.FAILING
    assert "loopback" in checked.health_error and stub.requests == []


def test_an_anthropic_endpoint_is_checked_by_counting_tokens(cast, stub) -> None:
    stub.body = {"input_tokens": 9}
    endpoint = services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-secret",
        values={"name": "Claude", "kind": "anthropic", "base_url": stub.url,
                "model": "claude-sonnet-4-5", "role": "tech_lead"})
    checked = health.endpoint_check_health(endpoint=endpoint)
    assert checked.health_status == HealthStatus.OK, checked.health_error
    method, path, headers, body = stub.requests[0]
    assert (method, path) == ("POST", "/v1/messages/count_tokens")
    # The SDK sends the key as x-api-key or as a bearer token, depending on its version.
    assert "sk-ant-secret" in (headers.get("x-api-key", ""), headers.get("authorization", "")
                               .removeprefix("Bearer "))
    assert json.loads(body)["model"] == "claude-sonnet-4-5"
    assert len(stub.requests) == 1


def test_an_anthropic_error_is_recorded_without_retries(cast, stub) -> None:
    stub.status = 529
    stub.body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    endpoint = services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-secret",
        values={"name": "Claude", "kind": "anthropic", "base_url": stub.url,
                "model": "claude-sonnet-4-5", "role": "tech_lead"})
    checked = health.endpoint_check_health(endpoint=endpoint)
    assert checked.health_status == HealthStatus.FAILING
    assert "529" in checked.health_error and "sk-ant-secret" not in checked.health_error
    assert len(stub.requests) == 1


def test_an_anthropic_endpoint_without_a_key_is_failing_without_a_call(cast, stub) -> None:
    endpoint = services.endpoint_create(
        organization=cast.org, actor=cast.admin,
        values={"name": "Claude", "kind": "anthropic", "base_url": stub.url,
                "model": "claude-sonnet-4-5", "role": "tech_lead"})
    checked = health.endpoint_check_health(endpoint=endpoint)
    assert "No API key" in checked.health_error and stub.requests == []


def test_only_a_change_of_status_is_an_audit_event(cast, stub) -> None:
    endpoint = openai_endpoint(cast, stub.url)
    for _ in range(3):
        health.endpoint_check_health(endpoint=endpoint)
    assert AuditEvent.objects.filter(type="endpoint.health_changed").count() == 1
    stub.status = 503
    health.endpoint_check_health(endpoint=endpoint)
    assert AuditEvent.objects.filter(type="endpoint.health_changed").count() == 2


def test_what_another_service_answers_is_not_kept_in_the_health_status(cast, stub) -> None:
    # An internal service's words (here a database admin page's) never reach the admin's page.
    stub.status = 403
    stub.body = {"type": "error", "error": {"type": "internal-db", "message": "pg_hba: root"}}
    endpoint = services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-secret",
        values={"name": "Claude", "kind": "anthropic", "base_url": stub.url,
                "model": "claude-sonnet-4-5", "role": "tech_lead"})
    checked = health.endpoint_check_health(endpoint=endpoint)
    assert checked.health_error == "Anthropic answered HTTP 403."
    stub.body = {"type": "error", "error": {"type": "authentication_error",
                                            "message": "invalid x-api-key"}}
    checked = health.endpoint_check_health(endpoint=endpoint)
    assert checked.health_error == "Anthropic answered HTTP 403 (authentication_error)."


def test_a_new_url_needs_the_key_again_so_the_stored_one_goes_nowhere_new(cast, stub) -> None:
    endpoint = openai_endpoint(cast, stub.url, api_key="sk-stored")
    with pytest.raises(ApplicationError) as refused:
        services.endpoint_update(organization=cast.org, endpoint=endpoint, actor=cast.admin,
                                 changes={"base_url": stub.url + "/other"})
    assert list(refused.value.details) == ["api_key"]
    assert "entered again" in refused.value.message
    endpoint.refresh_from_db()
    assert endpoint.base_url == stub.url and endpoint.reveal_api_key() == "sk-stored"
    # With the key typed again (or cleared) the move is made.
    moved = services.endpoint_update(organization=cast.org, endpoint=endpoint,
                                     actor=cast.admin, changes={"base_url": stub.url + "/v1"},
                                     api_key="sk-typed-again")
    assert moved.base_url == stub.url + "/v1" and moved.reveal_api_key() == "sk-typed-again"

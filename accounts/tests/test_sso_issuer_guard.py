"""An organization's OpenID provider is reached only through the SSRF guard: its issuer and
everything its discovery document names; a stored client secret never follows a new issuer;
an issuer answering nonsense is a clear 502, never a server error."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from accounts import services
from accounts.models import SSOConnection
from haao.errors import ApplicationError

SECRET = "oidc-client-secret-do-not-show"


class _Issuer(BaseHTTPRequestHandler):
    body = b"<html>not a discovery document</html>"
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def issuer() -> Iterator[str]:
    _Issuer.hits = 0
    cache.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Issuer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def connect(cast, issuer: str) -> SSOConnection:
    return services.sso_connection_save(
        organization=cast.org, actor=cast.admin, client_secret=SECRET,
        fields={"protocol": "oidc", "oidc_issuer": issuer, "oidc_client_id": "haao",
                "email_domains": ["acme.test"], "enabled": True})


@pytest.mark.django_db
def test_a_new_issuer_needs_the_client_secret_entered_again(cast) -> None:
    connect(cast, "https://login.acme.test")
    with pytest.raises(ApplicationError) as refused:
        services.sso_connection_save(organization=cast.org, actor=cast.admin,
                                     fields={"oidc_issuer": "https://elsewhere.test"})
    assert "entered again" in refused.value.message
    assert list(refused.value.details) == ["oidc_client_secret"]
    stored = SSOConnection.objects.get(organization=cast.org)
    assert stored.oidc_issuer == "https://login.acme.test"
    assert stored.oidc_client_secret.reveal() == SECRET
    moved = services.sso_connection_save(organization=cast.org, actor=cast.admin,
                                         fields={"oidc_issuer": "https://elsewhere.test"},
                                         client_secret="typed-again")
    moved.refresh_from_db()
    assert moved.oidc_client_secret.reveal() == "typed-again"


@pytest.mark.django_db
def test_an_issuer_on_a_private_address_is_refused_when_saved(cast) -> None:
    with pytest.raises(ApplicationError) as refused:
        connect(cast, "http://169.254.169.254/latest")
    assert "link-local" in refused.value.message
    assert list(refused.value.details) == ["oidc_issuer"]
    assert not SSOConnection.objects.filter(organization=cast.org).exists()


@pytest.mark.django_db
def test_a_discovery_document_that_is_not_json_is_a_502_naming_no_internals(
        cast, issuer: str) -> None:
    with override_settings(HAAO_ENDPOINT_ALLOWLIST=["127.0.0.1"]):
        connect(cast, issuer)
        response = Client().post("/sso/", {"identifier": "ann@acme.test"})
    assert response.status_code == 502
    assert b"cannot be reached" in response.content and b"127.0.0.1" not in response.content
    assert _Issuer.hits == 1


@pytest.mark.django_db
def test_an_anonymous_start_cannot_make_haao_fetch_a_private_issuer(cast, issuer: str) -> None:
    # Saved while the operator allowed loopback, then the allowlist no longer names it: the
    # guard at the connection refuses, and nothing is fetched.
    with override_settings(HAAO_ENDPOINT_ALLOWLIST=["127.0.0.1"]):
        connect(cast, issuer)
    with override_settings(HAAO_ENDPOINT_ALLOWLIST=[]):
        response = Client().post("/sso/", {"identifier": "ann@acme.test"})
    assert response.status_code == 502
    assert _Issuer.hits == 0

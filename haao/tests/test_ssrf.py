"""The SSRF guard refuses URLs that reach the platform's own network, naming why."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from haao import ssrf
from haao.ssrf import UnsafeEndpointURL, check_endpoint_url

PUBLIC = "http://93.184.215.14/v1"


def refused(url: str, *, allowlist: list[str] | None = None) -> str:
    with pytest.raises(UnsafeEndpointURL) as caught:
        check_endpoint_url(url, allowlist=allowlist or [])
    assert caught.value.details == {"base_url": [caught.value.message]}
    return caught.value.message


def test_a_public_address_is_allowed() -> None:
    check_endpoint_url(PUBLIC, allowlist=[])
    check_endpoint_url("https://[2606:4700:4700::1111]:8443/v1", allowlist=[])


@pytest.mark.parametrize(("url", "why"), [
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.20:1234/v1", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://127.0.0.1:1234/v1", "loopback"),
    ("http://127.8.9.10/", "loopback"),
    ("http://[::1]:8080/", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://0.0.0.0:1234/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://localhost:1234/v1", "loopback"),
])
def test_non_public_addresses_are_refused_naming_the_kind(url: str, why: str) -> None:
    message = refused(url)
    assert why in message and "HAAO_ENDPOINT_ALLOWLIST" in message


@pytest.mark.parametrize(("url", "text"), [
    ("ftp://93.184.215.14/", "Only http:// and https://"),
    ("file:///etc/passwd", "Only http:// and https://"),
    ("gopher://93.184.215.14:70/", "Only http:// and https://"),
    ("93.184.215.14:1234", "Only http:// and https://"),
    ("http://user:secret@93.184.215.14/", "user name or password"),
    ("http://token@93.184.215.14/", "user name or password"),
    ("http:///v1", "no host"),
    ("http://93.184.215.14:99999/", "not a valid URL"),
    ("http://93.184.215.14/v1 x", "spaces or control"),
    ("http://93.184.215.14/\x00", "spaces or control"),
    ("http://93.184.215.14/?a=b", "query"),
    ("", "Enter the endpoint's URL"),
    ("http://" + "a" * 3000 + ".com/", "longer than"),
])
def test_malformed_and_credential_urls_are_refused(url: str, text: str) -> None:
    assert text in refused(url)


def test_the_allowlist_permits_named_hosts_ips_and_networks() -> None:
    check_endpoint_url("http://localhost:1234/v1", allowlist=["localhost"])
    check_endpoint_url("http://127.0.0.1:1234/v1", allowlist=["127.0.0.1"])
    check_endpoint_url("http://192.168.1.77:8000/", allowlist=["192.168.1.0/24"])
    check_endpoint_url("http://[::1]:8000/", allowlist=["::1"])
    assert "private" in refused("http://192.168.2.1/", allowlist=["192.168.1.0/24"])


def test_the_allowlist_never_permits_credentials_or_other_schemes() -> None:
    assert "password" in refused("http://a:b@localhost/", allowlist=["localhost"])
    assert "Only http" in refused("ftp://localhost/", allowlist=["localhost"])


@override_settings(HAAO_ENDPOINT_ALLOWLIST=["localhost", "127.0.0.1"])
def test_the_setting_is_the_default_allowlist() -> None:
    check_endpoint_url("http://localhost:1234/v1")
    check_endpoint_url("http://127.0.0.1:1234/v1")
    with pytest.raises(UnsafeEndpointURL):
        check_endpoint_url("http://10.0.0.1/")


def test_a_malformed_allowlist_entry_names_the_setting() -> None:
    with pytest.raises(ImproperlyConfigured, match="HAAO_ENDPOINT_ALLOWLIST"):
        check_endpoint_url(PUBLIC, allowlist=["192.168.1.0/33"])


def test_an_unresolvable_host_is_refused() -> None:
    assert "could not be resolved" in refused("http://no-such-host.invalid/")


# --- Ports, tunnelled IPv4, and transports that connect where they checked ----------------------

def test_an_allowlist_entry_with_a_port_allows_that_port_only() -> None:
    check_endpoint_url("http://127.0.0.1:8100/v1", allowlist=["127.0.0.1:8100"])
    check_endpoint_url("http://localhost:8100/v1", allowlist=["localhost:8100"])
    check_endpoint_url("http://[::1]:8080/", allowlist=["[::1]:8080"])
    assert "port 5432" in refused("http://127.0.0.1:5432/", allowlist=["127.0.0.1:8100"])
    assert "loopback" in refused("http://localhost:6379/", allowlist=["localhost:8100"])
    assert "port 8101" in refused("http://10.0.0.5:8101/", allowlist=["10.0.0.0/8:8100"])


@pytest.mark.parametrize("entry", ["gpu-box:http", "127.0.0.1:0", "[::1]x", "a:b:c/99"])
def test_a_malformed_port_in_the_allowlist_names_the_entry(entry: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="HAAO_ENDPOINT_ALLOWLIST"):
        check_endpoint_url(PUBLIC, allowlist=[entry])


@pytest.mark.parametrize(("url", "why"), [
    ("http://[2002:7f00:1::1]/", "loopback"),        # 6to4 around 127.0.0.1
    ("http://[2002:a00:1::1]/", "private"),          # 6to4 around 10.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 around 169.254.169.254
    ("http://[64:ff9b:1::c0a8:101]/", "private"),    # local-use NAT64 around 192.168.1.1
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", "private"),  # Teredo, client 10.0.0.1
])
def test_ipv6_addresses_that_carry_a_private_ipv4_are_refused(url: str, why: str) -> None:
    assert why in refused(url)


@override_settings(HAAO_ENDPOINT_ALLOWLIST=[],
                   HAAO_ENDPOINT_ALLOWLIST_BY_ORG="acme=127.0.0.1:8100")
def test_an_organizations_own_allowlist_applies_to_it_alone(cast) -> None:
    check_endpoint_url("http://127.0.0.1:8100/v1", organization_id=cast.org.pk)
    with pytest.raises(UnsafeEndpointURL):
        check_endpoint_url("http://127.0.0.1:8100/v1", organization_id=cast.other_org.pk)
    with pytest.raises(UnsafeEndpointURL):
        check_endpoint_url("http://127.0.0.1:8100/v1")


class _Hits(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Host", "")))
        if self.path == "/bounce":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.end_headers()
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[int]:
    _Hits.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str]) -> None:
    """The guard's resolver answers `answers` (a name → an address): what a DNS server
    that changes its answer between the check and a second lookup would give the guard."""
    real = ssrf.resolve

    def resolve(host: str, port: int, *, field: str = "base_url") -> list[Any]:
        if host in answers:
            return [ipaddress.ip_address(answers[host])]
        return real(host, port, field=field)

    monkeypatch.setattr(ssrf, "resolve", resolve)


@override_settings(HAAO_ENDPOINT_ALLOWLIST=["127.0.0.1"])
def test_the_transports_connect_to_the_address_the_guard_checked(
        monkeypatch: pytest.MonkeyPatch, loopback_server: int) -> None:
    # "models.rebind.invalid" resolves nowhere for the system; only the guard's answer can
    # have taken the request to the loopback server, with the name kept in the Host header.
    _resolving(monkeypatch, {"models.rebind.invalid": "127.0.0.1"})
    url = f"http://models.rebind.invalid:{loopback_server}/v1/models"
    with ssrf.pinned_client() as client:
        assert client.get(url).json() == {"ok": True}
    with ssrf.pinned_session(timeout=5) as session:
        assert session.get(url).json() == {"ok": True}
    assert _Hits.seen == [("/v1/models", f"models.rebind.invalid:{loopback_server}")] * 2


@override_settings(HAAO_ENDPOINT_ALLOWLIST=[])
def test_the_transports_refuse_a_name_that_now_resolves_to_a_private_address(
        monkeypatch: pytest.MonkeyPatch, loopback_server: int) -> None:
    _resolving(monkeypatch, {"models.rebind.invalid": "127.0.0.1"})
    url = f"http://models.rebind.invalid:{loopback_server}/v1/models"
    with ssrf.pinned_client() as client, pytest.raises(ssrf.RefusedAddress, match="loopback"):
        client.get(url)
    with ssrf.pinned_session(timeout=5) as session, \
            pytest.raises(requests.ConnectionError, match="loopback"):
        session.get(url)
    assert _Hits.seen == []


@override_settings(HAAO_ENDPOINT_ALLOWLIST=["127.0.0.1"])
def test_a_redirect_is_not_followed_past_the_guard(loopback_server: int) -> None:
    with ssrf.pinned_client() as client:
        assert client.get(f"http://127.0.0.1:{loopback_server}/bounce").status_code == 302
    with pytest.raises(ValueError, match="redirects"):
        ssrf.pinned_client(follow_redirects=True)
    # The anthropic SDK's client, as the Tech Lead and the health check build it.
    with anthropic.DefaultHttpxClient(follow_redirects=False,
                                      transport=ssrf.SDKPinnedTransport()) as sdk:
        assert sdk.get(f"http://127.0.0.1:{loopback_server}/bounce").status_code == 302
    assert [path for path, _ in _Hits.seen] == ["/bounce", "/bounce"]

"""The SSRF guard refuses URLs that reach the platform's own network, naming why."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from agents.ssrf import UnsafeEndpointURL, check_endpoint_url

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

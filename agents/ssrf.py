"""Server-side request forgery guard for model endpoint URLs.

An organization admin types an endpoint's URL and HAAO's servers call it, so the URL must not
reach the platform's own network (cloud metadata, databases, admin ports) unless the platform
operator allowed that in `HAAO_ENDPOINT_ALLOWLIST` (host names, IPs or CIDRs, e.g.
`localhost,127.0.0.1,::1,192.168.1.0/24` for a local LM Studio). `check_endpoint_url` runs
when an endpoint is saved and again right before every call (agents' model clients, the health
check), because what a name resolves to can change in between.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from haao.errors import ApplicationError

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeEndpointURL(ApplicationError):
    """The URL may not be called from HAAO's servers; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, details={"base_url": [message]})


@dataclass(frozen=True)
class Allowlist:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    def permits_host(self, host: str) -> bool:
        return host in self.hosts

    def permits_address(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)


def parse_allowlist(entries: Iterable[str]) -> Allowlist:
    """Host names, IPs and CIDRs; a malformed IP or CIDR names the setting."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        if entry.startswith("[") and entry.endswith("]"):
            entry = entry[1:-1]
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if "/" in entry or ":" in entry or entry.replace(".", "").isdigit():
            raise ImproperlyConfigured(
                f"HAAO_ENDPOINT_ALLOWLIST: {raw.strip()!r} is neither a host name, an IP "
                "address nor a network like 192.168.1.0/24.")
        hosts.add(entry)
    return Allowlist(frozenset(hosts), tuple(networks))


def _why_not_public(address: IPAddress) -> str | None:
    """The kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _why_not_public(address.ipv4_mapped)
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        # 169.254.169.254 is the metadata service of most clouds.
        return "a link-local address (cloud metadata lives here)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private network address"
    if not address.is_global:
        return "a reserved address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise UnsafeEndpointURL(f"The host '{host[:100]}' could not be resolved.") from None
    addresses: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
        address = ipaddress.ip_address(text)
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_endpoint_url(url: str, *, allowlist: Iterable[str] | None = None) -> None:
    """Refuse a URL HAAO must not call; `allowlist` defaults to HAAO_ENDPOINT_ALLOWLIST."""
    if not isinstance(url, str) or not url:
        raise UnsafeEndpointURL("Enter the endpoint's URL, e.g. http://gpu-box:1234/v1.")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeEndpointURL(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise UnsafeEndpointURL("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeEndpointURL("This is not a valid URL (check the host and port).") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme[:20] or "none"
        raise UnsafeEndpointURL(f"Only http:// and https:// URLs are allowed (got '{shown}').")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeEndpointURL("The URL may not contain a user name or password; put the key "
                                "in the API key field.")
    if parts.fragment or parts.query:
        raise UnsafeEndpointURL("The URL may not contain a query (?…) or fragment (#…).")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeEndpointURL("The URL has no host name.")
    permitted = parse_allowlist(
        settings.HAAO_ENDPOINT_ALLOWLIST if allowlist is None else allowlist)
    if permitted.permits_host(host):
        return
    for address in resolve(host, port or DEFAULT_PORTS[scheme]):
        reason = _why_not_public(address)
        if reason and not permitted.permits_address(address):
            target = host if str(address) == host else f"{host} ({address})"
            raise UnsafeEndpointURL(
                f"{target} is {reason}; HAAO does not call it unless the platform operator "
                "lists it in HAAO_ENDPOINT_ALLOWLIST.")


def allowlisted(host: str, port: int, *, allowlist: Iterable[str] | None = None) -> bool:
    """Whether the operator named this host (or every address it resolves to) explicitly."""
    permitted = parse_allowlist(
        settings.HAAO_ENDPOINT_ALLOWLIST if allowlist is None else allowlist)
    if permitted.permits_host(host):
        return True
    addresses = resolve(host, port)
    return bool(addresses) and all(permitted.permits_address(a) for a in addresses)

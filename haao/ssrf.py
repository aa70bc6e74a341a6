"""Server-side request forgery guard for every URL HAAO's servers call on a tenant's word.

An organization admin types a model endpoint's URL, an SSO issuer, a forge's API URL, and
HAAO's servers call it, so the call must not reach the platform's own network (cloud metadata,
databases, admin ports) unless the platform operator allowed that: `HAAO_ENDPOINT_ALLOWLIST`
(host names, IPs or CIDRs, each optionally with a port — `localhost:1234`,
`192.168.1.0/24`, `[::1]:8080` — for every organization) and
`HAAO_ENDPOINT_ALLOWLIST_BY_ORG` (the same entries per organization slug,
`acme=gpu-box:1234 10.0.0.5:8000;beta=lmstudio:1234`).

Two layers: `check_endpoint_url` refuses a URL when it is saved and right before each call,
naming why; and the transports (`PinnedTransport` for httpx, `SDKPinnedTransport` for the
anthropic SDK's httpx2, `pinned_session` for requests, which allauth uses) check every
connection again and connect to the very address they checked, so a name that resolves to a
public address for the check and to a private one for the connection (DNS rebinding) gets
nowhere. No redirect is followed unchecked.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import httpx2
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from haao.errors import ApplicationError

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64 prefixes: the well-known one and the local-use one (RFC 6052, RFC 8215).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class UnsafeEndpointURL(ApplicationError):
    """The URL may not be called from HAAO's servers; the message says why."""

    def __init__(self, message: str, *, field: str = "base_url") -> None:
        super().__init__(message, details={field: [message]})


@dataclass(frozen=True)
class Allowlist:
    # host name → the ports allowed (None: any port)
    hosts: Mapping[str, frozenset[int] | None]
    networks: tuple[tuple[IPNetwork, int | None], ...]

    def permits_host(self, host: str, port: int | None = None) -> bool:
        if host.lower() not in self.hosts:
            return False
        ports = self.hosts[host.lower()]
        return ports is None or (port is not None and port in ports)

    def permits_address(self, address: IPAddress, port: int | None = None) -> bool:
        return any(address.version == net.version and address in net
                   and (allowed is None or allowed == port)
                   for net, allowed in self.networks)


def _split_port(entry: str, raw: str) -> tuple[str, int | None]:
    """`host:port`, `1.2.3.4:80`, `[::1]:80` → (host, port); anything else keeps no port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ImproperlyConfigured(f"HAAO_ENDPOINT_ALLOWLIST: {raw.strip()!r} is not "
                                       "[IPv6]:port.")
        return host, _port(rest[1:], raw)
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _port(port, raw)
    return entry, None


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ImproperlyConfigured(f"HAAO_ENDPOINT_ALLOWLIST: {raw.strip()!r} names no TCP "
                                   "port (1-65535) after the colon.")
    return int(text)


def parse_allowlist(entries: Iterable[str]) -> Allowlist:
    return _parse_allowlist(tuple(entries))


@functools.lru_cache(maxsize=64)
def _parse_allowlist(entries: tuple[str, ...]) -> Allowlist:
    """Host names, IPs and CIDRs, each with an optional port; a malformed one names itself
    (checked at start-up by haao.apps)."""
    hosts: dict[str, set[int] | None] = {}
    networks: list[tuple[IPNetwork, int | None]] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        entry, port = _split_port(entry, raw)
        entry = entry.rstrip(".")
        try:
            networks.append((ipaddress.ip_network(entry, strict=False), port))
            continue
        except ValueError:
            pass
        if "/" in entry or ":" in entry or entry.replace(".", "").isdigit() or not entry:
            raise ImproperlyConfigured(
                f"HAAO_ENDPOINT_ALLOWLIST: {raw.strip()!r} is neither a host name, an IP "
                "address nor a network like 192.168.1.0/24 (each may end in :port).")
        if port is None:
            hosts[entry] = None
        elif entry not in hosts or hosts[entry] is not None:
            ports = hosts.get(entry) or set()
            ports.add(port)
            hosts[entry] = ports
    return Allowlist({h: None if p is None else frozenset(p) for h, p in hosts.items()},
                     tuple(networks))


@functools.lru_cache(maxsize=8)
def parse_allowlist_by_org(text: str) -> dict[str, tuple[str, ...]]:
    """`acme=gpu:1234 10.0.0.5;beta=lm:1234` → {"acme": ("gpu:1234", "10.0.0.5"), …}."""
    result: dict[str, tuple[str, ...]] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        slug, sep, entries = part.partition("=")
        if not sep or not slug.strip():
            raise ImproperlyConfigured(
                f"HAAO_ENDPOINT_ALLOWLIST_BY_ORG: {part.strip()!r} is not "
                "<organization slug>=<entries separated by spaces or commas>.")
        items = tuple(e for e in entries.replace(",", " ").split() if e)
        parse_allowlist(items)  # malformed entries fail at start-up, naming themselves
        result[slug.strip().lower()] = items
    return result


def _org_slug(organization_id: Any) -> str:
    """Read each time (slugs can be renamed); only when per-organization entries exist."""
    from accounts.models import Organization

    return str(Organization.objects.values_list("slug", flat=True)
               .filter(pk=organization_id).first() or "")


def effective_allowlist(*, allowlist: Iterable[str] | None = None,
                        organization_id: Any = None) -> Allowlist:
    """The platform's entries (or `allowlist`), plus the organization's own."""
    entries = tuple(settings.HAAO_ENDPOINT_ALLOWLIST if allowlist is None else allowlist)
    if allowlist is None and organization_id is not None and \
            settings.HAAO_ENDPOINT_ALLOWLIST_BY_ORG:
        by_org = parse_allowlist_by_org(settings.HAAO_ENDPOINT_ALLOWLIST_BY_ORG)
        entries += by_org.get(_org_slug(organization_id), ())
    return parse_allowlist(entries)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to its destination: mapped, 6to4, Teredo
    (the client), NAT64 (the last 32 bits)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _why_not_public(address: IPAddress) -> str | None:
    """The kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = _why_not_public(embedded)
            return f"{reason} (inside {address})" if reason and address.ipv4_mapped is None \
                else reason
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


def resolve(host: str, port: int, *, field: str = "base_url") -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise UnsafeEndpointURL(f"The host '{host[:100]}' could not be resolved.",
                                field=field) from None
    addresses: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
        address = ipaddress.ip_address(text)
        if address not in addresses:
            addresses.append(address)
    return addresses


def checked_address(host: str, port: int, *, allowlist: Iterable[str] | None = None,
                    organization_id: Any = None, field: str = "base_url") -> IPAddress:
    """The address to connect to for `host:port`: every address the name resolves to is
    public or allowed, and the first is the one to use (pin it)."""
    host = host.rstrip(".").lower()
    permitted = effective_allowlist(allowlist=allowlist, organization_id=organization_id)
    return _first_allowed(host, port, resolve(host, port, field=field), permitted, field)


def _first_allowed(host: str, port: int, addresses: list[IPAddress], permitted: Allowlist,
                   field: str) -> IPAddress:
    if not addresses:
        raise UnsafeEndpointURL(f"The host '{host[:100]}' could not be resolved.", field=field)
    if permitted.permits_host(host, port):
        return addresses[0]
    for address in addresses:
        reason = _why_not_public(address)
        if reason and not permitted.permits_address(address, port):
            target = host if str(address) == host else f"{host} ({address})"
            raise UnsafeEndpointURL(
                f"{target} port {port} is {reason}; HAAO does not call it unless the platform "
                "operator lists it in HAAO_ENDPOINT_ALLOWLIST.", field=field)
    return addresses[0]


def check_endpoint_url(url: str, *, allowlist: Iterable[str] | None = None,
                       organization_id: Any = None, field: str = "base_url",
                       what: str = "the endpoint's URL, e.g. http://gpu-box:1234/v1",
                       key_label: str = "API key", unresolved_ok: bool = False) -> None:
    """Refuse a URL HAAO must not call; `allowlist` defaults to the operator's settings for
    the organization. The message names the problem; `details` name `field`. With
    `unresolved_ok`, a name that does not resolve yet passes (the transports check it again
    when it is called)."""
    def refuse(message: str) -> UnsafeEndpointURL:
        return UnsafeEndpointURL(message, field=field)

    if not isinstance(url, str) or not url:
        raise refuse(f"Enter {what}.")
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise refuse("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("This is not a valid URL (check the host and port).") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme[:20] or "none"
        raise refuse(f"Only http:// and https:// URLs are allowed (got '{shown}').")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise refuse("The URL may not contain a user name or password; put the key in the "
                     f"{key_label} field.")
    if parts.fragment or parts.query:
        raise refuse("The URL may not contain a query (?…) or fragment (#…).")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise refuse("The URL has no host name.")
    port = port or DEFAULT_PORTS[scheme]
    permitted = effective_allowlist(allowlist=allowlist, organization_id=organization_id)
    if permitted.permits_host(host, port):
        return  # named by the operator: no lookup needed to allow it
    try:
        addresses = resolve(host.lower(), port, field=field)
    except UnsafeEndpointURL:
        if unresolved_ok:
            return
        raise
    _first_allowed(host.lower(), port, addresses, permitted, field)  # one lookup, one list


def allowlisted(host: str, port: int, *, allowlist: Iterable[str] | None = None,
                organization_id: Any = None) -> bool:
    """Whether the operator named this host (or every address it resolves to) explicitly."""
    permitted = effective_allowlist(allowlist=allowlist, organization_id=organization_id)
    if permitted.permits_host(host, port):
        return True
    addresses = resolve(host, port)
    return bool(addresses) and all(permitted.permits_address(a, port) for a in addresses)


# --- Transports that connect only to the address they checked ----------------------------------

def _pinned_netloc(address: IPAddress, port: int | None) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{host}:{port}" if port else host


class _Pinning:
    """Checks a request's host with the guard and points the request at the checked address
    (the Host header stays; TLS checks the certificate against the host name)."""

    def __init__(self, *, organization_id: Any = None,
                 allowlist: Iterable[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._organization_id = organization_id
        self._allowlist = None if allowlist is None else tuple(allowlist)

    def _pin(self, request: Any, refused_class: Any) -> None:
        host = request.url.host
        scheme = request.url.scheme
        port = request.url.port or DEFAULT_PORTS.get(scheme, 80)
        try:
            address = checked_address(host, port, allowlist=self._allowlist,
                                      organization_id=self._organization_id)
        except UnsafeEndpointURL as refused:
            raise refused_class(refused.message, request=request) from None
        if str(address) != host:
            request.url = request.url.copy_with(host=str(address))
            if scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}


class RefusedAddress(httpx.ConnectError):
    """A transport refused to connect: the address is not one HAAO may call."""


class SDKRefusedAddress(httpx2.ConnectError):
    """The same, in the anthropic SDK's HTTP library (httpx2); the SDK reports it as a
    connection error."""


class PinnedTransport(_Pinning, httpx.HTTPTransport):
    """An httpx transport that connects only to addresses the SSRF guard checked."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._pin(request, RefusedAddress)
        return super().handle_request(request)


class SDKPinnedTransport(_Pinning, httpx2.HTTPTransport):
    """The same for the anthropic SDK, which runs on httpx2:
    `anthropic.DefaultHttpxClient(transport=SDKPinnedTransport(...))`."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self._pin(request, SDKRefusedAddress)
        return super().handle_request(request)


def pinned_client(*, organization_id: Any = None, verify: Any = True, **kwargs: Any,
                  ) -> httpx.Client:
    """An httpx client through `PinnedTransport` that follows no redirect."""
    kwargs.setdefault("follow_redirects", False)
    if kwargs["follow_redirects"]:
        raise ValueError("A guarded client does not follow redirects.")
    transport = PinnedTransport(organization_id=organization_id, verify=verify)
    return httpx.Client(transport=transport, **kwargs)


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter that checks each request's host with the guard and connects to the
    checked address; the Host header and TLS name stay the host's."""

    def __init__(self, *, organization_id: Any = None, **kwargs: Any) -> None:
        self._organization_id = organization_id
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
        try:
            address = checked_address(host, port, organization_id=self._organization_id)
        except UnsafeEndpointURL as refused:
            raise requests.exceptions.ConnectionError(refused.message,
                                                      request=request) from None
        if str(address) != host:
            request.headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
            request.url = urlunsplit(parts._replace(netloc=_pinned_netloc(address, parts.port)))
            setattr(request, "_haao_tls_host", host)  # noqa: B010 (not a declared attribute)
        return super().send(request, *args, **kwargs)

    def build_connection_pool_key_attributes(
            self, request: requests.PreparedRequest, verify: Any, cert: Any = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        tls_host = getattr(request, "_haao_tls_host", None)
        if tls_host and host_params.get("scheme") == "https":
            pool_kwargs["server_hostname"] = tls_host
            pool_kwargs["assert_hostname"] = tls_host
        return host_params, pool_kwargs


def pinned_session(*, organization_id: Any = None, timeout: float | None = None,
                   ) -> requests.Session:
    """A requests session whose every connection, redirects included, goes through the
    guard to the address it checked."""
    session = requests.Session()
    adapter = _PinnedAdapter(organization_id=organization_id)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # no proxy from the environment takes the call elsewhere
    if timeout is not None:
        session.request = functools.partial(session.request, timeout=timeout)  # type: ignore[method-assign]
    return session

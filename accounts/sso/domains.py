"""Email domains as HAAO compares them, and the DNS TXT record that proves one is owned.

Tests replace `txt_records` (monkeypatch); nothing else in HAAO resolves DNS for this.
"""

from __future__ import annotations

import re

import dns.exception
import dns.resolver

from haao.errors import ApplicationError

VERIFICATION_PREFIX = "haao-verification="
RECORD_LABEL = "_haao"
DNS_TIMEOUT_SECONDS = 5.0

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})$")


def normalize_domain(raw: str) -> str:
    """The lowercase IDNA (punycode) form of a domain; ApplicationError when it is none."""
    domain = raw.strip().lower().rstrip(".")
    if domain.startswith("@"):
        domain = domain[1:]
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ApplicationError(f"'{raw.strip()}' is not a domain name.",
                               code="invalid_domain", details={"domain": ["invalid"]}) from None
    if len(ascii_domain) > 253 or not _DOMAIN.match(ascii_domain):
        raise ApplicationError(f"'{raw.strip()}' is not a domain name (like example.com).",
                               code="invalid_domain", details={"domain": ["invalid"]})
    return ascii_domain


def email_domain(email: str) -> str:
    """The normalized domain of an email address, or "" when it has none that is valid."""
    domain = (email or "").strip().rpartition("@")[2]
    if not domain:
        return ""
    try:
        return normalize_domain(domain)
    except ApplicationError:
        return ""


def record_name(domain: str) -> str:
    """Where the admin publishes the TXT record (the bare domain is also accepted)."""
    return f"{RECORD_LABEL}.{domain}"


def record_value(token: str) -> str:
    return f"{VERIFICATION_PREFIX}{token}"


def txt_records(name: str) -> list[str]:
    """The TXT strings published at `name`; [] when there are none or DNS does not answer."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = DNS_TIMEOUT_SECONDS
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.exception.DNSException, OSError):
        return []
    # A TXT record may be split into several strings of at most 255 bytes; joined, it is one.
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


def has_verification_record(domain: str, token: str) -> bool:
    """Whether `_haao.<domain>` or `<domain>` publishes `haao-verification=<token>`."""
    wanted = record_value(token)
    return any(value.strip() == wanted
               for name in (record_name(domain), domain)
               for value in txt_records(name))

"""The shared cast: an organization with one user per role, and an outsider elsewhere."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Membership, Organization, User
from accounts.roles import Role
from agents import services as agent_services
from agents.models import InferenceEndpoint
from agents.pricing import CURRENT_SONNET
from agents.sandbox import sandbox_available
from haao.audit import seal
from haao.models import AuditEvent
from tests.factories import MembershipFactory, OrganizationFactory, ProjectFactory
from tickets.models import Project


@dataclass
class Cast:
    org: Organization
    other_org: Organization
    admin: User
    product_owner: User
    manager: User
    member: User
    outsider: User  # an admin of other_org, nothing in org
    project: Project
    other_project: Project

    def membership(self, user: User) -> Membership:
        return Membership.objects.get(organization=self.org, user=user)


@pytest.fixture
def cast(db: None) -> Cast:
    org = OrganizationFactory(name="Acme", slug="acme")
    other = OrganizationFactory(name="Globex", slug="globex")
    users = {role: MembershipFactory(organization=org, role=role).user for role in Role.values}
    outsider = MembershipFactory(organization=other, role=Role.ADMIN).user
    return Cast(
        org=org, other_org=other, admin=users[Role.ADMIN],
        product_owner=users[Role.PRODUCT_OWNER], manager=users[Role.MANAGER],
        member=users[Role.MEMBER], outsider=outsider,
        project=ProjectFactory(organization=org, key="PAY", name="Payments"),
        other_project=ProjectFactory(organization=other, key="GLX", name="Globex core"),
    )


def token_client(org: Organization, user: User, scopes: list[str]) -> APIClient:
    """An API client authenticated by a real token of `user` in `org`."""
    _, raw = services.api_token_create(
        organization=org, user=user, name="test", scopes=scopes,
        expires_at=timezone.now() + timedelta(days=30),
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def page_as_compared(response: Any, url: str) -> bytes:
    """A page's body with what varies per request and tells nothing set aside: the URL that
    was asked for (a 404 page names it) and the CSRF token's per-response mask."""
    body = response.content.replace(url.encode(), b"<url>")
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b'name="csrfmiddlewaretoken"',
                  body)



def portal_client(user: User) -> Client:
    """A browser signed in as `user` (the session, as after a password sign-in)."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_portal(cast: Cast) -> Client:
    """The portal, signed in as the organization's admin."""
    return portal_client(cast.admin)


def audit_events(organization: Organization, type: str | None = None) -> list[AuditEvent]:
    """The organization's audit events (of `type`, when given) in their order, sealed as their
    writers' commits would have sealed them (a test's transaction never commits: unsealed rows
    have no seq, and the database returns rows of equal seq in any order)."""
    seal(organization.pk)
    events = AuditEvent.objects.for_org(organization)
    if type is not None:
        events = events.filter(type=type)
    return list(events.order_by("seq"))


def last_event(organization: Organization, type: str | None = None) -> AuditEvent:
    """The organization's newest audit event (of `type`, when given), sealed."""
    events = audit_events(organization, type)
    assert events, f"No {type or 'audit'} event was written."
    return events[-1]


@contextlib.contextmanager
def tampering() -> Iterator[None]:
    """Change rows as someone with the database owner's rights could: past the trigger that
    refuses HAAO's own connections any change to a written audit row."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        else:
            cursor.execute("DROP TRIGGER haao_audit_row_immutable")
    yield
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = DEFAULT")
    # SQLite: the test's transaction rolls the dropped trigger back.


def loopback_allowed() -> override_settings:
    """Scripted model servers on 127.0.0.1 pass the outbound-address guard."""
    return override_settings(HAAO_ENDPOINT_ALLOWLIST=["127.0.0.1"])


@pytest.fixture
def allow_loopback() -> Iterator[None]:
    with loopback_allowed():
        yield


@pytest.fixture
def require_sandbox() -> None:
    """Skip without bubblewrap, unless HAAO_REQUIRE_SANDBOX=1 says it must be there."""
    if sandbox_available():
        return
    if os.environ.get("HAAO_REQUIRE_SANDBOX") == "1":
        pytest.fail("HAAO_REQUIRE_SANDBOX=1 but bubblewrap cannot start a sandbox here")
    pytest.skip("bubblewrap (bwrap) is not installed or cannot create namespaces here")


def coder_endpoint(organization: Organization, actor: User, *,
                   base_url: str = "http://127.0.0.1:9/v1", name: str = "Workstation",
                   **values: Any) -> InferenceEndpoint:
    """A free local coder endpoint (OpenAI-compatible), made as an admin makes one."""
    with loopback_allowed():
        return agent_services.endpoint_create(
            organization=organization, actor=actor,
            values={"name": name, "kind": "openai_compatible", "flavor": "lm_studio",
                    "base_url": base_url, "model": "qwen-coder", "role": "coder",
                    "price_input": "0", "price_output": "0", **values})


def tech_lead_endpoint(organization: Organization, actor: User, *, base_url: str,
                       name: str = "Claude", **values: Any) -> InferenceEndpoint:
    """The organization's Claude Tech Lead endpoint, served at `base_url`."""
    with loopback_allowed():
        return agent_services.endpoint_create(
            organization=organization, actor=actor, api_key="sk-ant-test",
            values={"name": name, "kind": "anthropic", "base_url": base_url,
                    "model": CURRENT_SONNET, "role": "tech_lead", **values})

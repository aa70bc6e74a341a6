"""Schemathesis over the whole REST API with every check on: generated requests, valid and
invalid, for each role's token, never get a server error, invalid ones are refused, valid
ones are accepted, and every response (status, content type, body) is the one the OpenAPI
description promises. A stateful run follows the document's links (project → requirement →
tickets → actions) through the same roles.

The schema comes from `/api/v1/schema/` of the WSGI app itself; requests go through the same
app in-process, inside each test's database transaction. Path parameters are pointed at
real rows (organization acme, project PAY, its requirement and tickets in several states),
so the handlers behind the 404s run too. Bounded to a few examples per operation.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from guardian.shortcuts import assign_perm
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from accounts import services as account_services
from accounts.roles import Role
from haao.audit import SYSTEM
from tests.factories import TicketFactory, spec_example
from tests.fixtures import Cast
from tickets import services
from tickets.models import Ticket, TicketStatus

app = get_wsgi_application()
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", app)

ROLES = [Role.ADMIN, Role.PRODUCT_OWNER, Role.MANAGER, Role.MEMBER]
load_all_checks()
ALL_CHECKS = CHECKS.get_all()
# Checks that cannot hold for an operation, each with the reason; everything else runs.
# All are positive_data_acceptance: the server refuses, with a 400 naming the field, values
# that no JSON Schema can tell apart from good ones.
REPORT_FILTERS = ("a filter naming a project, requirement or endpoint the organization lacks, "
                  "or a period ending before it starts or longer than 3660 days")
URLS = ("a URL must pass the SSRF guard, which resolves its host; an Anthropic model needs "
        "prices unless the price table knows it")
SPEC = ("a spec is checked against the Atomic Ticket JSON Schema, published on its own at "
        "/api/v1/schemas/atomic-ticket/v1.json")
EXCLUDED: dict[str, dict[str, str]] = {
    "reports_costs": {"positive_data_acceptance": REPORT_FILTERS},
    "reports_costs_csv": {"positive_data_acceptance": REPORT_FILTERS},
    "projects_create": {"positive_data_acceptance": URLS},
    "projects_update": {"positive_data_acceptance": URLS},
    "endpoints_create": {"positive_data_acceptance": URLS},
    "endpoints_update": {"positive_data_acceptance": URLS},
    "tokens_create": {"positive_data_acceptance": "an expiry must lie in the coming year; "
                                                  "JSON Schema has no clock"},
    "requirements_reorder": {"positive_data_acceptance": "the keys must be exactly the "
                                                         "requirement's tickets"},
    "requirements_add_ticket": {"positive_data_acceptance": SPEC},
    "tickets_update_spec": {"positive_data_acceptance": SPEC},
}


def checks_for(case: Any) -> list[Any]:
    """Every check schemathesis has, less the operation's recorded exclusions."""
    excluded = EXCLUDED.get(case.operation.definition.raw.get("operationId", ""), {})
    return [check for check in ALL_CHECKS if check.__name__ not in excluded]
# States a ticket of the seeded requirement is put in, so every action meets both a
# state where it is allowed and ones where it answers 409.
STATES = [TicketStatus.AWAITING_ACCEPTANCE, TicketStatus.QUEUED, TicketStatus.BLOCKED,
          TicketStatus.RUNNING, TicketStatus.ACCEPTED]


@pytest.fixture(autouse=True)
def connections_stay_open() -> Iterator[None]:
    """Keep the test's transaction: the real WSGI handler closes connections it finds in a
    transaction after each request (Django's test client turns this off the same way)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@dataclass
class World:
    headers: dict[str, dict[str, str]]  # role → Authorization header
    ticket_keys: list[str]
    requirement_keys: list[str]


@pytest.fixture
def world(cast: Cast) -> World:
    """Project PAY with a proposed requirement, tickets in several states, and a token per
    role (the product owner granted approval on PAY, the member granted view)."""
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    assign_perm("tickets.view_project", cast.member, cast.project)
    requirement = services.requirement_create(project=cast.project, actor=cast.admin,
                                              title="Invoices", text="Round totals.")
    services.requirement_propose(requirement=requirement, actor=SYSTEM, specs=[
        spec_example(title="Round totals"), spec_example(title="Export CSV")])
    requirement.refresh_from_db()
    for number, state in enumerate(STATES, start=100):
        TicketFactory(requirement=requirement, status=state, number=number)
    other = services.requirement_create(project=cast.project, actor=cast.admin,
                                        title="Reports", text="Monthly report.")
    headers = {}
    for role in ROLES:
        # Every scope: what a role may do is then decided by the role and its grants.
        _, raw = account_services.api_token_create(
            organization=cast.org, user=getattr(cast, role), name="schemathesis",
            scopes=["admin"], expires_at=timezone.now() + timedelta(days=1))
        headers[role] = {"Authorization": f"Bearer {raw}"}
    keys = [t.key for t in Ticket.objects.for_org(cast.org).select_related("project")]
    return World(headers, sorted(keys), [requirement.key, other.key])


def point_at_real_rows(case: Any, world: World) -> None:
    """Send the generated request to acme and, by the generated value's hash, to one of
    the seeded rows: different examples meet different tickets and states."""
    parameters = case.path_parameters
    if parameters is None:
        return
    if "org" in parameters:
        parameters["org"] = "acme"
    if "key" in parameters:
        pick = zlib.crc32(repr(parameters["key"]).encode())
        path = case.operation.path
        if "/tickets/" in path:
            parameters["key"] = world.ticket_keys[pick % len(world.ticket_keys)]
        elif "/requirements/{key}" in path:
            parameters["key"] = world.requirement_keys[pick % len(world.requirement_keys)]
        else:
            parameters["key"] = "PAY"


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_the_api_never_errors_and_answers_as_described(case: Any, world: World) -> None:
    point_at_real_rows(case, world)
    for role in ROLES:
        case.call_and_validate(headers=world.headers[role], checks=checks_for(case))


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_following_the_links_keeps_to_the_contract(role: str, world: World) -> None:
    """Stateful: create a project, submit a requirement, read it, add and act on tickets, as
    the document's links lead, with every check on every step."""
    headers = world.headers[role]

    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            if case.path_parameters and "org" in case.path_parameters:
                case.path_parameters["org"] = "acme"

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=checks_for(case), headers=headers)

    Links.run(settings=settings(
        max_examples=3, stateful_step_count=5, deadline=None,
        suppress_health_check=list(HealthCheck)))

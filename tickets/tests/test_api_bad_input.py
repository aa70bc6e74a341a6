"""Bad input to every requirement and ticket write endpoint: a clear 400 (or 415) naming the
problem, never a 500, and nothing changed. tests/test_bad_input.py defers these routes here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from haao.audit import SYSTEM
from haao.endpoints import SAFE_METHODS
from haao.models import AuditEvent
from tests.factories import TicketFactory, spec_example
from tests.fixtures import Cast, token_client
from tests.routes import COVERED_ELSEWHERE, SCOPED
from tickets import services
from tickets.models import Requirement, Ticket

pytestmark = pytest.mark.django_db

MEGABYTE = "x" * (1024 * 1024)
ORG = "/api/v1/orgs/acme"


@dataclass(frozen=True)
class Target:
    """What an endpoint acts on, in the state where a valid body would succeed."""

    requirement: Requirement
    tickets: dict[str, Ticket]


@dataclass(frozen=True)
class Endpoint:
    route: str
    method: str
    url: Callable[[Target], str]
    valid: dict[str, Any] | None  # None: the endpoint takes no body
    strings: tuple[str, ...] = ()  # top-level string fields
    lists: tuple[str, ...] = ()  # top-level lists of strings
    spec: str | None = None  # where the spec is: "spec" (a field) or "" (the whole body)
    empty_is_valid: bool = False


T = "api/v1/orgs/<slug:org>/tickets/<str:key>/"
R = "api/v1/orgs/<slug:org>/requirements/<str:key>/"
ENDPOINTS = [
    Endpoint(T, "PATCH", lambda t: f"{ORG}/tickets/{t.tickets['proposed'].key}/",
             {"spec": spec_example()}, spec="spec"),
    Endpoint(f"{T}approve/", "POST",
             lambda t: f"{ORG}/tickets/{t.tickets['proposed'].key}/approve/", None),
    Endpoint(f"{T}accept/", "POST",
             lambda t: f"{ORG}/tickets/{t.tickets['awaiting_acceptance'].key}/accept/", None),
    Endpoint(f"{T}reject/", "POST",
             lambda t: f"{ORG}/tickets/{t.tickets['awaiting_acceptance'].key}/reject/",
             {"feedback": "Still wrong."}, strings=("feedback",)),
    Endpoint(f"{T}cancel/", "POST",
             lambda t: f"{ORG}/tickets/{t.tickets['queued'].key}/cancel/",
             {"reason": "Not needed."}, strings=("reason",), empty_is_valid=True),
    Endpoint(f"{T}retry/", "POST",
             lambda t: f"{ORG}/tickets/{t.tickets['blocked'].key}/retry/", None),
    Endpoint(f"{R}approve/", "POST", lambda t: f"{ORG}/requirements/{t.requirement.key}/approve/",
             None),
    Endpoint(f"{R}reorder/", "POST", lambda t: f"{ORG}/requirements/{t.requirement.key}/reorder/",
             {"keys": []}, lists=("keys",)),
    Endpoint(f"{R}tickets/", "POST", lambda t: f"{ORG}/requirements/{t.requirement.key}/tickets/",
             spec_example(), spec=""),
]
IDS = [f"{e.method} {e.route}" for e in ENDPOINTS]


@pytest.fixture
def target(cast: Cast) -> Target:
    requirement = services.requirement_create(project=cast.project, actor=cast.admin,
                                              title="Invoices", text="Round totals.")
    services.requirement_propose(requirement=requirement, actor=SYSTEM,
                                 specs=[spec_example(title="Proposed")])
    requirement.refresh_from_db()
    tickets = {"proposed": Ticket.objects.get(requirement=requirement)}
    for number, state in enumerate(("awaiting_acceptance", "queued", "blocked"), start=100):
        tickets[state] = TicketFactory(requirement=requirement, status=state, number=number)
    return Target(requirement, tickets)


@pytest.fixture
def client(cast: Cast) -> APIClient:
    client = token_client(cast.org, cast.admin, ["admin"])
    client.get(f"{ORG}/")  # records the token's first use before any snapshot
    return client


def stored(cast: Cast) -> dict[str, list[Any]]:
    return {
        "tickets": sorted(map(str, Ticket.objects.for_org(cast.org).values_list(
            "id", "status", "title", "spec", "order", "feedback"))),
        "requirements": sorted(map(str, Requirement.objects.for_org(cast.org).values_list(
            "id", "status"))),
        "audit": list(AuditEvent.objects.for_org(cast.org).values_list("seq", flat=True)),
    }


def send(client: APIClient, endpoint: Endpoint, target: Target, body: Any,
         content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.generic(endpoint.method, endpoint.url(target), raw, content_type=content_type)


def refused(response: Any, statuses: tuple[int, ...] = (400,)) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    error = response.json()["error"]
    assert error["message"], error
    assert len(response.content) < 20_000, "the error must not echo the input back"
    return dict(error)


def cases(endpoint: Endpoint) -> list[tuple[str, Any]]:
    """(what the error must name, a bad body) for the endpoint's fields."""
    if endpoint.spec == "":
        return []  # the body is the spec: see spec_cases
    valid = endpoint.valid or {}
    found: list[tuple[str, Any]] = [("surprise", {**valid, "surprise": 1})]
    for field in endpoint.strings:
        found += [(field, {**valid, field: bad}) for bad in
                  ("a\x00b", "\ud800", MEGABYTE, 12345, {"a": "b"}, ["a"], True, None)]
    for field in endpoint.lists:
        found += [(field, {**valid, field: bad}) for bad in
                  (["a\x00"], [MEGABYTE], "PAY-1", 1, {"a": "b"}, None, [1], [{"a": "b"}])]
    if endpoint.spec == "spec":
        found += [("spec", {}), ("spec", {"spec": "text"}), ("spec", {"spec": None})]
    return found


def spec_cases(endpoint: Endpoint) -> list[Any]:
    """Bad specs: each must answer 400 with JSON paths in `details.errors`."""
    bad = [spec_example(title="a\x00b"),
           spec_example(constraints=[MEGABYTE]), spec_example(objective="x" * 300_000),
           spec_example(complexity="2"), {**spec_example(), "status": "accepted"}]
    return [{"spec": spec} for spec in bad] if endpoint.spec == "spec" else bad


def test_every_write_route_deferred_here_is_covered() -> None:
    listed = {(e.route, e.method) for e in ENDPOINTS}
    for route in SCOPED:
        if not route.route.startswith(tuple(COVERED_ELSEWHERE)):
            continue
        for method in route.methods:
            if method not in SAFE_METHODS:
                assert (route.route, method) in listed, f"{method} /{route.route}"


FIELD_ENDPOINTS = [e for e in ENDPOINTS if e.spec != ""]


@pytest.mark.parametrize("endpoint", FIELD_ENDPOINTS,
                         ids=[f"{e.method} {e.route}" for e in FIELD_ENDPOINTS])
def test_bad_fields_are_refused_naming_the_field(endpoint, cast, target, client) -> None:
    before = stored(cast)
    for field, body in cases(endpoint):
        error = refused(send(client, endpoint, target, body))
        assert field in error["details"], (field, error)
    assert stored(cast) == before


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.spec is not None],
                         ids=[i for e, i in zip(ENDPOINTS, IDS, strict=True)
                              if e.spec is not None])
def test_bad_specs_answer_400_with_json_paths(endpoint, cast, target, client) -> None:
    before = stored(cast)
    for body in spec_cases(endpoint):
        error = refused(send(client, endpoint, target, body))
        assert error["code"] == "spec_invalid"
        assert all(problem["path"].startswith("$") for problem in error["details"]["errors"])
    assert stored(cast) == before


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.spec is not None],
                         ids=[i for e, i in zip(ENDPOINTS, IDS, strict=True)
                              if e.spec is not None])
def test_a_spec_with_an_unpaired_surrogate_is_refused_naming_its_field(
        endpoint, cast, target, client) -> None:
    # Refused by the API's JSON parser before the spec is read (haao/parsers.py).
    before = stored(cast)
    body = spec_example(objective="\ud800")
    error = refused(send(client, endpoint, target, {"spec": body} if endpoint.spec else body))
    assert "objective" in error["message"] and "unpaired surrogate" in error["message"]
    assert stored(cast) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_malformed_bodies_answer_400_or_415_and_change_nothing(
    endpoint, cast, target, client,
) -> None:
    before = stored(cast)
    valid = json.dumps(endpoint.valid or {})
    bodies = [('{"spec": ', "application/json", 400), ("[1, 2]", "application/json", 400),
              ('"just a string"', "application/json", 400),
              ("\xff\xfe garbage", "application/json", 400),
              ("NaN", "application/json", 400),
              (valid, "text/plain", 415), (valid, "application/xml", 415)]
    if endpoint.valid is not None and not endpoint.empty_is_valid:
        bodies.append(("", "application/json", 400))
    for body, content_type, status in bodies:
        refused(send(client, endpoint, target, body, content_type), (status,))
    assert stored(cast) == before

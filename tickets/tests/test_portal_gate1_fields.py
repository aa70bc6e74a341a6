"""Gate 1 as a product owner reads and edits it: each proposed ticket shown like the ticket
page (with its expected cost), and its common parts edited as fields, validated like the JSON."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from guardian.shortcuts import assign_perm

from agents.models import InferenceEndpoint
from haao.audit import SYSTEM
from haao.models import AuditEvent
from tests.factories import spec_example
from tests.fixtures import portal_client
from tickets import services
from tickets.models import Requirement, Ticket

PAGE = "/o/acme/requirements/PAY-R1/"
FIELDS = PAGE + "tickets/PAY-1/fields/"
EXCERPT = 'def total(items):\n    """Sum of the items."""\n    return sum(items)  # <b>\n'


@pytest.fixture
def po(cast: Any) -> Any:
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    return cast.product_owner


@pytest.fixture
def proposal(cast: Any, po: Any) -> tuple[Requirement, list[Ticket]]:
    """PAY-R1 awaiting Gate 1: PAY-1, and PAY-2 which depends on it."""
    requirement = services.requirement_create(project=cast.project, actor=po,
                                              title="Invoices round", text="Round totals.")
    first = spec_example(
        title="Round totals", code_context=[{"path": "billing/totals.py", "line_start": 7,
                                             "line_end": 9, "content": EXCERPT}],
        definition_of_done=[{"name": "unit tests", "command": ["pytest", "-q", "tests/a b.py"],
                             "expected_exit_code": 0, "timeout_seconds": 120,
                             "output_must_contain": ["3 passed"]}])
    tickets = services.requirement_propose(
        requirement=requirement, actor=SYSTEM,
        specs=[first, spec_example(title="Show totals", dependencies=["#1"], complexity=4)])
    requirement.refresh_from_db()
    return requirement, tickets


def fields_post(ticket: Ticket, **changes: Any) -> dict[str, Any]:
    """What the browser posts from the ticket's fields as the page shows them, with `changes`
    (field name → value; `checks-0-name` style names for the check rows)."""
    spec = ticket.spec
    data: dict[str, Any] = {
        "title": spec["title"], "objective": spec["objective"],
        "constraints": "\n".join(spec["constraints"]),
        "allowed_paths": "\n".join(spec["allowed_paths"]),
        "checks-TOTAL_FORMS": len(spec["definition_of_done"]) + 1,
        "checks-INITIAL_FORMS": len(spec["definition_of_done"]),
        "checks-MIN_NUM_FORMS": 0, "checks-MAX_NUM_FORMS": 100,
    }
    for index, check in enumerate(spec["definition_of_done"]):
        data[f"checks-{index}-name"] = check["name"]
        data[f"checks-{index}-command"] = " ".join(check["command"])
        data[f"checks-{index}-expected_exit_code"] = check.get("expected_exit_code", 0)
        data[f"checks-{index}-timeout_seconds"] = check["timeout_seconds"]
    data.update(changes)
    return {f"{ticket.key}-{name}": value for name, value in data.items()}


def spec_of(ticket: Ticket) -> dict[str, Any]:
    return Ticket.objects.get(pk=ticket.pk).spec


# --- Reading a proposed ticket -----------------------------------------------------------------

def test_each_proposed_ticket_shows_its_spec_like_the_ticket_page(cast, po, proposal) -> None:
    body = portal_client(po).get(PAGE).content.decode()
    card = body[body.index('id="ticket-PAY-1"'):body.index('id="ticket-PAY-2"')]
    assert "Invoice totals must be rounded half-up to two decimals." in card
    assert "Do not change the public signature of total()." in card
    assert "Files it may change" in card and "tests/test_totals.py" in card
    # The Definition of Done as a table: name, the command as typed, what it expects.
    assert re.search(r'<th scope="row"[^>]*>unit tests</th><td[^>]*>pytest -q '
                     r"&#x27;tests/a b.py&#x27;</td><td[^>]*>exit code 0; output contains "
                     r"“3 passed”</td><td[^>]*>2 min 00 s</td>", card)
    assert "Complexity <strong>2</strong> of 5" in card
    # The excerpt: numbered from its first line, highlighted, escaped.
    assert re.search(r'aria-hidden="true">7  </span><span class="tok-k">def</span>', card)
    assert '<span class="tok-sd">"""Sum of the items."""</span>' in card
    assert "&lt;b&gt;" in card and "# <b>" not in card
    second = body[body.index('id="ticket-PAY-2"'):]
    assert 'Depends on: <a class="link font-mono" href="#ticket-PAY-1">PAY-1</a>' in second
    # The ticket page has no card to jump to: there the link opens the other ticket.
    page = portal_client(po).get("/o/acme/tickets/PAY-2/").content.decode()
    assert 'Depends on: <a class="link font-mono" href="/o/acme/tickets/PAY-1/">PAY-1</a>' in page


def test_the_expected_cost_is_priced_at_the_coder_endpoint_and_called_an_estimate(
        cast, po, proposal) -> None:
    InferenceEndpoint.objects.create(
        organization=cast.org, name="gpu-box", kind="openai_compatible", role="coder",
        base_url="http://127.0.0.1:9/v1", model="qwen-coder", price_input=Decimal("1"),
        price_output=Decimal("2"))
    body = portal_client(po).get(PAGE).content.decode()
    costs = re.findall(r"Expected cost <strong class=\"tabular-nums\">([0-9.]+) USD</strong> "
                       r"per attempt <span[^>]*>\(an estimate: about (\d+) tokens on gpu-box, "
                       r"qwen-coder", body)
    assert len(costs) == 2
    # PAY-2 is more complex, so its answer is expected to be longer and to cost more.
    assert Decimal(costs[1][0]) > Decimal(costs[0][0]) > 0
    total = re.search(r'id="proposal-estimate">Expected cost: about <strong[^>]*>([0-9.]+) USD',
                      body)
    assert total and Decimal(total[1]) == Decimal(costs[0][0]) + Decimal(costs[1][0])


def test_without_a_coder_endpoint_the_cost_is_unknown_and_says_why(cast, po, proposal) -> None:
    body = portal_client(po).get(PAGE).content.decode()
    assert body.count("Expected cost <strong>unknown</strong>") == 2
    assert "no coder endpoint is enabled" in body and 'id="proposal-estimate"' not in body


def test_a_manager_reads_the_spec_but_gets_no_fields_and_403_posting_them(
        cast, po, proposal) -> None:
    _, tickets = proposal
    body = portal_client(cast.manager).get(PAGE).content.decode()
    assert "Do not change the public signature" in body and "Edit PAY-1" not in body
    response = portal_client(cast.manager).post(FIELDS, fields_post(tickets[0], title="Mine"))
    assert response.status_code == 403 and spec_of(tickets[0])["title"] == "Round totals"


# --- Editing through the fields ---------------------------------------------------------------

def test_editing_the_fields_stores_the_spec_and_records_what_changed(cast, po, proposal) -> None:
    _, tickets = proposal
    before = spec_of(tickets[0])
    response = portal_client(po).post(FIELDS, fields_post(
        tickets[0], title="Round totals half-up", objective="Round half-up to cents.",
        constraints="Keep total()'s signature.\n\n  No new dependencies.  ",
        allowed_paths="billing/totals.py\nbilling/tests/test_*.py",
        **{"checks-0-command": "pytest -q 'tests/test totals.py'",
           "checks-0-output_must_contain": "2 passed",
           "checks-1-name": "lint", "checks-1-command": "ruff check billing",
           "checks-1-expected_exit_code": ""}))
    assert response.status_code == 302 and response["Location"].endswith("#ticket-PAY-1")
    spec = spec_of(tickets[0])
    assert spec["title"] == "Round totals half-up"
    assert spec["objective"] == "Round half-up to cents."
    assert spec["constraints"] == ["Keep total()'s signature.", "No new dependencies."]
    assert spec["allowed_paths"] == ["billing/totals.py", "billing/tests/test_*.py"]
    assert spec["definition_of_done"] == [
        {"name": "unit tests", "command": ["pytest", "-q", "tests/test totals.py"],
         "expected_exit_code": 0, "timeout_seconds": 120, "output_must_contain": ["2 passed"]},
        {"name": "lint", "command": ["ruff", "check", "billing"], "expected_exit_code": 0,
         "timeout_seconds": 120}]
    # What the fields do not show is kept as it was.
    assert spec["code_context"] == before["code_context"] and spec["complexity"] == 2
    assert Ticket.objects.get(pk=tickets[0].pk).title == "Round totals half-up"
    event = AuditEvent.objects.for_org(cast.org).get(type="ticket.spec_edited")
    assert event.actor_user_id == po.pk and event.target_label == "PAY-1"
    assert event.data["changed"] == ["allowed_paths", "constraints", "definition_of_done",
                                     "objective", "title"]


def test_a_check_is_removed_with_its_checkbox(cast, po, proposal) -> None:
    _, tickets = proposal
    client = portal_client(po)
    client.post(FIELDS, fields_post(tickets[0], **{"checks-1-name": "lint",
                                                   "checks-1-command": "ruff check ."}))
    assert [c["name"] for c in spec_of(tickets[0])["definition_of_done"]] == ["unit tests",
                                                                              "lint"]
    ticket = Ticket.objects.get(pk=tickets[0].pk)
    assert client.post(FIELDS, fields_post(ticket, **{"checks-0-DELETE": "on"})).status_code == 302
    assert [c["name"] for c in spec_of(tickets[0])["definition_of_done"]] == ["lint"]


def test_a_bad_field_is_refused_next_to_it_and_nothing_is_stored(cast, po, proposal) -> None:
    _, tickets = proposal
    before = spec_of(tickets[0])
    response = portal_client(po).post(FIELDS, fields_post(
        tickets[0], allowed_paths="billing/totals.py\n/etc/passwd",
        **{"checks-0-timeout_seconds": "9999"}))
    assert response.status_code == 400
    body = response.content.decode()
    paths = body[body.index('id="id_PAY-1-allowed_paths_error"'):]
    assert paths.startswith('id="id_PAY-1-allowed_paths_error">') \
        and "Line 2 must be a relative path (no leading /)." in paths[:300]
    timeout = body[body.index('id="id_PAY-1-checks-0-timeout_seconds_error"'):][:200]
    assert "Must be at most 3600." in timeout
    summary = body[body.index('id="edit-PAY-1-errors"'):][:1500]
    assert "fix these 2 problems. Nothing was stored." in summary
    assert "Files it may change: Line 2 must be a relative path" in summary
    assert "Check 1, Timeout (seconds): Must be at most 3600." in summary
    assert '<details id="edit-PAY-1" open>' in body
    assert "/etc/passwd</textarea>" in body  # what was typed stays in the field
    assert spec_of(tickets[0]) == before
    assert not AuditEvent.objects.for_org(cast.org).filter(type="ticket.spec_edited").exists()


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"title": ""}, "title", "Enter a title."),
    ({"checks-0-command": "pytest 'unclosed"}, "checks-0-command",
     "This command cannot be split into arguments"),
    ({"checks-0-expected_exit_code": "zero"}, "checks-0-expected_exit_code",
     "Enter a whole number."),
    ({"checks-1-name": "lint"}, "checks-1-command", "Enter the command to run."),
])
def test_input_the_fields_cannot_read_is_refused_naming_the_field(
        cast, po, proposal, changes, field, message) -> None:
    _, tickets = proposal
    before = spec_of(tickets[0])
    response = portal_client(po).post(FIELDS, fields_post(tickets[0], **changes))
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body[body.index(f'id="id_PAY-1-{field}_error"'):][:300]
    assert "Nothing was stored." in body and spec_of(tickets[0]) == before


def test_removing_every_check_is_refused_because_done_needs_one(cast, po, proposal) -> None:
    _, tickets = proposal
    response = portal_client(po).post(FIELDS, fields_post(tickets[0], **{"checks-0-DELETE": "on"}))
    assert response.status_code == 400
    assert "Definition of Done must have at least 1 item." in response.content.decode()
    assert len(spec_of(tickets[0])["definition_of_done"]) == 1


def test_fields_of_an_approved_ticket_are_refused_with_409(cast, po, proposal) -> None:
    requirement, tickets = proposal
    services.requirement_approve(requirement=requirement, actor=po)
    response = portal_client(po).post(FIELDS, fields_post(tickets[0], title="Late"))
    assert response.status_code == 409 and "only proposed tickets can be edited" in \
        response.content.decode()
    assert spec_of(tickets[0])["title"] == "Round totals"


def test_an_excerpt_is_numbered_from_its_first_line_whatever_its_ending() -> None:
    from tickets.templatetags.tickets_ui import code_lines

    lines = code_lines({"path": "notes.txt", "line_start": 98, "content": "a\n<b>\nc"})
    assert [line.number for line in lines] == [" 98", " 99", "100"]
    assert lines[1].html == "&lt;b&gt;"
    assert code_lines({"path": "x.py", "line_start": 1, "content": ""}) == []
    assert [line.number for line in code_lines({"path": "x.py", "content": "x\n\ny\n"})] == \
        ["1", "2", "3"]
    assert [line.html for line in code_lines({"path": "t.txt", "content": "x\n\n"})] == \
        ["x", ""]

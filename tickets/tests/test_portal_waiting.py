"""'Waiting for my decision' also lists what is stuck until a product owner acts: blocked
tickets (including machine failures that need an admin) and failed decompositions, each with
what unblocks it, in a bounded number of queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from tests.factories import ProjectFactory, RequirementFactory, TicketFactory
from tests.fixtures import portal_client
from tickets.models import NEEDS_ADMIN, Ticket
from tickets.selectors import decisions_waiting_for

MACHINE = f"{NEEDS_ADMIN}: `go` is not found inside the sandbox: install it on the worker."


def blocked(cast: Any, reason: str, **fields: Any) -> Ticket:
    requirement = RequirementFactory(project=fields.pop("project", cast.project),
                                     status="approved")
    return TicketFactory(requirement=requirement, status="blocked", block_reason=reason,
                         **fields)


def panel(user: Any, path: str = "/o/acme/") -> str:
    html = portal_client(user).get(path).content.decode()
    return html[html.index("Waiting for my decision"):]


@pytest.fixture
def po(cast: Any) -> Any:
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    return cast.product_owner


def test_a_blocked_ticket_waits_with_its_reason_and_a_link_to_retry_it(cast, po) -> None:
    stuck = blocked(cast, "The audit failed 3 times: totals are still floats.",
                    title="Round totals")
    html = panel(po)
    assert "Blocked" in html and "Round totals" in html
    assert "The audit failed 3 times: totals are still floats." in html
    assert f'href="/o/acme/tickets/{stuck.key}/#gate"' in html and "Edit and retry" in html
    # The link leads to the ticket's Retry button.
    page = portal_client(po).get(f"/o/acme/tickets/{stuck.key}/").content.decode()
    assert 'id="retry-button"' in page


def test_a_machine_failure_says_to_ask_an_admin_and_why(cast, po) -> None:
    stuck = blocked(cast, MACHINE, title="Port the CLI to Go")
    html = panel(po)
    assert "Ask an admin: `go` is not found inside the sandbox: install it on the worker." in html
    assert "Edit and retry" not in html and f"/o/acme/tickets/{stuck.key}/#gate" in html


def test_a_failed_decomposition_waits_with_its_cause_and_where_to_submit_again(cast, po) -> None:
    failed = RequirementFactory(project=cast.project, status="failed", title="Refunds",
                                failure="The Tech Lead proposed no valid ticket.")
    html = panel(po)
    assert "Decomposition failed" in html and "Refunds" in html
    assert "The Tech Lead proposed no valid ticket." in html
    assert f'href="/o/acme/requirements/{failed.key}/#proposal"' in html
    assert "submit it again from the project" in html


def test_stuck_work_is_counted_with_the_gates_newest_first(cast, po) -> None:
    now = timezone.now()
    blocked(cast, "Budget spent.", title="Old block", status_changed_at=now - timedelta(days=3))
    RequirementFactory(project=cast.project, status="proposed", title="Fresh proposal",
                       created_at=now - timedelta(hours=1))
    RequirementFactory(project=cast.project, status="failed", title="Failed yesterday",
                       created_at=now - timedelta(days=1))
    html = panel(po)
    assert 'tabular-nums">3</span>' in html
    assert html.index("Fresh proposal") < html.index("Failed yesterday") < html.index("Old block")


def test_stuck_work_of_projects_the_user_does_not_decide_stays_out(cast, po) -> None:
    other = ProjectFactory(organization=cast.org, key="OPS", name="Operations")
    blocked(cast, "Budget spent.", title="Not my block", project=other)
    RequirementFactory(project=other, status="failed", title="Not my failure")
    RequirementFactory(project=cast.other_project, status="failed", title="Another tenant")
    for user in (po, cast.manager, cast.member):
        html = panel(user)
        assert "Not my block" not in html and "Not my failure" not in html
        assert "Another tenant" not in html
    assert "Not my block" in panel(cast.admin) and "Not my failure" in panel(cast.admin)


def test_the_list_costs_the_same_queries_however_much_waits(
        cast, po, django_assert_max_num_queries) -> None:
    def fill(count: int) -> None:
        for n in range(count):
            RequirementFactory(project=cast.project, status="proposed", title=f"Proposal {n}")
            RequirementFactory(project=cast.project, status="failed", title=f"Failed {n}")
            blocked(cast, MACHINE if n % 2 else "Budget spent.", title=f"Blocked {n}")
            TicketFactory(requirement=RequirementFactory(project=cast.project,
                                                         status="approved"),
                          status="awaiting_acceptance", title=f"Done {n}")

    fill(1)
    with django_assert_max_num_queries(8) as few:
        small = decisions_waiting_for(user=po, organization=cast.org)
    fill(30)
    with django_assert_max_num_queries(len(few.captured_queries)):
        large = decisions_waiting_for(user=po, organization=cast.org)
    assert small.total == 4 and large.total == 124 and len(large.decisions) == 20
    assert {d.kind for d in small.decisions} == {"requirement", "failed", "blocked", "ticket"}

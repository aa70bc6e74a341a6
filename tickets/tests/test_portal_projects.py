"""The portal's projects list, project page with its board, new requirements, and
"waiting for my decision" on the home page and the organization overview."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from guardian.shortcuts import assign_perm

from accounts.roles import Role
from haao.audit import SYSTEM, Actor, seal
from haao.models import AuditEvent
from tests.factories import MembershipFactory, ProjectFactory, RequirementFactory, TicketFactory
from tickets.models import Attempt, Requirement, Ticket
from tickets.services.engine import progress

pytestmark = pytest.mark.django_db
PROJECTS = "/o/acme/projects/"
PAGE = "/o/acme/projects/PAY/"
NEW = "/o/acme/projects/PAY/requirements/new/"


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def grant(cast: Any, user: Any, perm: str = "approve_project") -> None:
    assign_perm(f"tickets.{perm}", user, cast.project)


def ticket(cast: Any, status: str, **fields: Any) -> Ticket:
    requirement = fields.pop("requirement", None) or RequirementFactory(
        project=cast.project, status="approved")
    return TicketFactory(requirement=requirement, status=status, **fields)


def column(html: str, slug: str) -> str:
    """The HTML of one board column."""
    match = re.search(rf'data-column="{slug}".*?(?=data-column="|data-board-end|$)', html,
                      re.S)
    assert match, f"no column {slug}"
    return match.group(0)


# --- Who sees what ---------------------------------------------------------------------------

def test_an_outsider_gets_404_on_every_page(cast) -> None:
    card = ticket(cast, "queued")
    for url in (PROJECTS, PAGE, f"{PAGE}cards/{card.key}/"):
        assert browser(cast.outsider).get(url).status_code == 404
    assert browser(cast.outsider).post(NEW, {"title": "x", "text": "y"}).status_code == 404
    assert not Requirement.objects.filter(project=cast.project, title="x").exists()


def test_another_organizations_project_is_not_found_like_a_missing_one(cast) -> None:
    admin = browser(cast.admin)
    assert admin.get("/o/acme/projects/GLX/").status_code == 404
    assert admin.get("/o/acme/projects/NOPE/").status_code == 404
    assert admin.get("/o/acme/projects/bad key/").status_code == 404


def test_members_see_only_the_projects_granted_to_them(cast) -> None:
    hidden = ProjectFactory(organization=cast.org, key="OPS", name="Operations")
    member = browser(cast.member)
    assert b"Payments" not in member.get(PROJECTS).content
    assert member.get(PAGE).status_code == 404
    grant(cast, cast.member, "view_project")
    listing = member.get(PROJECTS).content.decode()
    assert "Payments" in listing and hidden.name not in listing
    page = member.get(PAGE)
    assert page.status_code == 200 and b"New requirement" not in page.content


def test_managers_read_every_project_without_a_form(cast) -> None:
    page = browser(cast.manager).get(PAGE)
    assert page.status_code == 200
    assert b'id="new-requirement"' not in page.content
    assert b"Payments" in browser(cast.manager).get(PROJECTS).content


def test_a_product_owner_needs_the_approve_grant_to_see_the_form(cast) -> None:
    po = browser(cast.product_owner)
    assert po.get(PAGE).status_code == 404
    grant(cast, cast.product_owner, "view_project")
    page = po.get(PAGE).content.decode()
    assert 'id="new-requirement"' not in page and "ask an admin to grant you approval" in page
    grant(cast, cast.product_owner)
    page = po.get(PAGE).content.decode()
    assert 'id="new-requirement"' in page and 'href="#new-requirement"' in page


def test_the_projects_list_counts_tickets_by_state(cast) -> None:
    for status in ("queued", "approved", "running", "auditing", "awaiting_acceptance",
                   "blocked", "accepted"):
        ticket(cast, status)
    html = browser(cast.admin).get(PROJECTS).content.decode()
    assert f'href="{PAGE}"' in html
    counts = dict(re.findall(r'<dt class="text-slate-500">([^<]+)</dt><dd[^>]*>(\d+)</dd>',
                             html))
    assert counts == {"At Gate 1": "0", "Queued": "2", "In progress": "2",
                      "Awaiting acceptance": "1", "Accepted": "1", "Blocked": "1"}


def test_an_empty_organization_says_how_projects_appear(cast) -> None:
    cast.project.delete()
    assert b"No projects yet" in browser(cast.admin).get(PROJECTS).content
    assert b"An admin of your organization can grant you access" in browser(
        cast.member).get(PROJECTS).content


# --- New requirement -------------------------------------------------------------------------

def test_a_granted_product_owner_submits_a_requirement_and_lands_on_it(cast) -> None:
    grant(cast, cast.product_owner)
    response = browser(cast.product_owner).post(
        NEW, {"title": "Invoices round to cents", "text": "Totals round half-up."})
    assert response.status_code == 302
    assert response["Location"] == "/o/acme/requirements/PAY-R1/"
    requirement = Requirement.objects.get(project=cast.project)
    assert requirement.title == "Invoices round to cents"
    assert requirement.created_by == cast.product_owner
    event = AuditEvent.objects.for_org(cast.org).get(type="requirement.created")
    assert event.actor_user == cast.product_owner and event.target_label == "PAY-R1"


def test_an_admin_submits_without_a_grant(cast) -> None:
    response = browser(cast.admin).post(NEW, {"title": "Refunds", "text": "Refund flow."})
    assert response.status_code == 302
    assert Requirement.objects.filter(project=cast.project, title="Refunds").exists()


@pytest.mark.parametrize("form, field, message", [
    ({"title": "", "text": "Something"}, "title", "This field is required."),
    ({"title": "x" * 201, "text": "Something"}, "title",
     "Title is at most 200 characters (got 201)."),
    ({"title": "Fine", "text": "   "}, "text", "This field is required."),
    ({"title": "Fine", "text": "y" * 20_001}, "text",
     "What you need is at most 20000 characters (got 20001)."),
    ({"title": "Fine", "text": "nul\x00byte"}, "text", "Null characters are not allowed."),
])
def test_bad_input_comes_back_with_400_on_its_field_and_nothing_stored(
        cast, form, field, message) -> None:
    grant(cast, cast.product_owner)
    response = browser(cast.product_owner).post(NEW, form)
    assert response.status_code == 400
    html = response.content.decode()
    error = re.search(rf'id="id_{field}_error"[^>]*>(.*?)</', html, re.S)
    assert error and message in html[error.start():error.start() + 400]
    assert 'aria-invalid="true"' in html
    assert not Requirement.objects.filter(project=cast.project).exists()
    assert not AuditEvent.objects.for_org(cast.org).filter(type="requirement.created").exists()


def test_readers_may_not_submit_requirements(cast) -> None:
    grant(cast, cast.member, "view_project")
    grant(cast, cast.product_owner, "view_project")
    for user in (cast.manager, cast.member, cast.product_owner):
        response = browser(user).post(NEW, {"title": "Sneaky", "text": "Should not store."})
        assert response.status_code == 403
    assert browser(cast.admin).get(NEW).status_code == 405
    assert not Requirement.objects.filter(project=cast.project).exists()


# --- The board -------------------------------------------------------------------------------

def test_the_board_puts_each_ticket_in_its_column_and_shows_the_wip_limit(cast) -> None:
    tickets = {status: ticket(cast, status, title=f"Work that is {status}") for status in (
        "approved", "queued", "running", "retrying", "escalated", "auditing",
        "awaiting_acceptance", "accepted", "blocked", "rejected", "cancelled")}
    proposed = ticket(cast, "proposed", title="Still at Gate 1")
    html = browser(cast.manager).get(PAGE).content.decode()
    expected = {"queued": ("approved", "queued", "rejected"),
                "in_progress": ("running", "retrying", "escalated", "auditing"),
                "awaiting": ("awaiting_acceptance",), "accepted": ("accepted",),
                "stopped": ("blocked", "cancelled")}
    for slug, statuses in expected.items():
        part = column(html, slug)
        for status, item in tickets.items():
            assert (f'data-ticket="{item.key}"' in part) == (status in statuses), (slug, status)
    assert proposed.key not in html
    assert re.search(r"In progress <span[^>]*data-wip-count>4</span> / <span[^>]*>3</span>",
                     html)
    card = column(html, "in_progress")
    assert f'href="/o/acme/tickets/{tickets["running"].key}/"' in card
    assert "Retrying" in card and "Escalated" in card and "Auditing" in card


def test_a_running_card_shows_checks_passed_and_tokens_streamed(cast) -> None:
    item = ticket(cast, "running")
    Attempt.objects.create(organization=cast.org, ticket=item, number=1, executor="local",
                           outcome="tests_failed")
    Attempt.objects.create(organization=cast.org, ticket=item, number=2, executor="local")
    model = Actor.model("qwen")
    progress(ticket=item, type="attempt.check", data={"attempt": 1, "index": 1, "of": 2,
                                                      "passed": True})
    progress(ticket=item, type="attempt.tokens", actor=model,
             data={"attempt": 2, "tokens": 1234, "characters": 5000})
    progress(ticket=item, type="attempt.check", data={"attempt": 2, "index": 1, "of": 2,
                                                      "passed": True})
    html = column(browser(cast.admin).get(PAGE).content.decode(), "in_progress")
    assert re.search(r"Checks <span data-progress-checks>1/2</span> · "
                     r"<span data-progress-tokens>1,234</span> tokens", html)
    assert "width: 50%" in html
    assert "#1 Tests failed" in html and "#2 Running" not in html


def test_a_finished_card_shows_its_latest_attempt_outcome(cast) -> None:
    item = ticket(cast, "blocked")
    Attempt.objects.create(organization=cast.org, ticket=item, number=1, executor="local",
                           outcome="passed")
    Attempt.objects.create(organization=cast.org, ticket=item, number=2, executor="cloud",
                           outcome="guardrail_violation")
    html = column(browser(cast.admin).get(PAGE).content.decode(), "stopped")
    assert "#2 Guardrail violation" in html and "data-progress" in html
    assert re.search(r'class="[^"]*hidden"[^>]*data-progress', html)


def test_a_large_column_shows_the_newest_fifty_and_says_how_many_more(cast) -> None:
    requirement = RequirementFactory(project=cast.project, status="approved")
    now = timezone.now()
    for n in range(53):
        ticket(cast, "accepted", requirement=requirement, title=f"Done {n}",
               status_changed_at=now - timedelta(minutes=n))
    html = column(browser(cast.admin).get(PAGE).content.decode(), "accepted")
    assert html.count("data-ticket=") == 50
    assert "Done 0<" in html and "Done 52<" not in html
    assert "3 older not shown" in html and "data-column-count>53<" in html


def test_the_board_resumes_after_the_last_event_the_page_shows(cast) -> None:
    html = browser(cast.admin).get(PAGE).content.decode()
    assert 'data-after="0"' in html
    item = ticket(cast, "queued")
    progress(ticket=item, type="ticket.dispatched", data={})
    seal(cast.org.pk)  # the writers' commits seal their events
    last = AuditEvent.objects.for_org(cast.org).filter(project_id=cast.project.pk).latest("seq")
    html = browser(cast.admin).get(PAGE).content.decode()
    assert f'data-after="{last.seq}"' in html
    assert 'data-stream="/ws/o/acme/projects/PAY/events/"' in html
    assert "js/board.js" in html and "js/live.js" in html
    assert 'aria-live="polite" data-live-status' in html and "Refresh" in html


def test_the_card_endpoint_renders_one_card_of_the_project(cast) -> None:
    item = ticket(cast, "awaiting_acceptance", title="Round totals")
    admin = browser(cast.admin)
    response = admin.get(f"{PAGE}cards/{item.key}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith("<li") and f'data-ticket="{item.key}"' in html
    assert 'data-status="awaiting_acceptance"' in html and "Round totals" in html
    assert admin.get(f"{PAGE}cards/PAY-999/").status_code == 404
    assert admin.get(f"{PAGE}cards/GLX-1/").status_code == 404
    assert admin.get(f"{PAGE}cards/garbage/").status_code == 404


def test_the_requirements_list_links_each_requirement_with_its_gate_one_count(cast) -> None:
    waiting = RequirementFactory(project=cast.project, status="proposed", title="Refunds")
    ticket(cast, "proposed", requirement=waiting)
    ticket(cast, "proposed", requirement=waiting)
    ticket(cast, "cancelled", requirement=waiting)
    html = browser(cast.manager).get(PAGE).content.decode()
    assert f'href="/o/acme/requirements/{waiting.key}/"' in html
    assert "Proposed (Gate 1)" in html
    assert re.search(r'text-amber-800">2</span> <span class="text-slate-500">/ 3</span>', html)


def test_a_project_without_requirements_says_who_writes_them(cast) -> None:
    assert b"Product owners with approval on this project submit them" in browser(
        cast.manager).get(PAGE).content
    assert b"Write the first requirement" in browser(cast.admin).get(PAGE).content


# --- Waiting for my decision -----------------------------------------------------------------

def test_a_granted_product_owner_sees_both_gates_newest_first(cast) -> None:
    grant(cast, cast.product_owner)
    other = ProjectFactory(organization=cast.org, key="OPS", name="Operations")
    old = RequirementFactory(project=cast.project, status="proposed", title="Old proposal",
                             created_at=timezone.now() - timedelta(days=2))
    done = ticket(cast, "awaiting_acceptance", title="Finished work",
                  status_changed_at=timezone.now() - timedelta(hours=1))
    RequirementFactory(project=other, status="proposed", title="Not my project")
    RequirementFactory(project=cast.project, status="approved", title="Already approved")
    html = browser(cast.product_owner).get("/o/acme/").content.decode()
    panel = html[html.index("Waiting for my decision"):]
    assert panel.index("Finished work") < panel.index("Old proposal")
    assert f'href="/o/acme/tickets/{done.key}/"' in panel
    assert f'href="/o/acme/requirements/{old.key}/"' in panel
    assert "Not my project" not in panel and "Already approved" not in panel


def test_an_admin_sees_every_projects_decisions(cast) -> None:
    other = ProjectFactory(organization=cast.org, key="OPS", name="Operations")
    RequirementFactory(project=other, status="proposed", title="Ops proposal")
    html = browser(cast.admin).get("/o/acme/").content.decode()
    assert "Ops proposal" in html and "Gate 1" in html


def test_people_who_do_not_decide_get_a_clear_empty_state(cast) -> None:
    RequirementFactory(project=cast.project, status="proposed", title="Proposal")
    for user in (cast.manager, cast.member, cast.product_owner):
        html = browser(user).get("/o/acme/").content.decode()
        assert "Waiting for my decision" in html and "Proposal" not in html
    assert b"Nothing to decide" in browser(cast.manager).get("/o/acme/").content
    grant(cast, cast.product_owner)
    Requirement.objects.update(status="approved")
    assert b"Nothing is waiting for you" in browser(cast.product_owner).get("/o/acme/").content


def test_the_home_page_gathers_decisions_from_every_organization(cast) -> None:
    MembershipFactory(organization=cast.other_org, user=cast.admin, role=Role.PRODUCT_OWNER)
    assign_perm("tickets.approve_project", cast.admin, cast.other_project)
    RequirementFactory(project=cast.project, status="proposed", title="Acme proposal")
    RequirementFactory(project=cast.other_project, status="proposed", title="Globex proposal")
    html = browser(cast.admin).get("/").content.decode()
    assert "Acme proposal" in html and "Globex proposal" in html
    assert "/o/globex/requirements/GLX-R" in html
    # The outsider decides in Globex only.
    html = browser(cast.outsider).get("/o/globex/").content.decode()
    assert "Globex proposal" in html and "Acme proposal" not in html


def test_the_overview_links_each_project_to_its_page(cast) -> None:
    assert f'href="{PAGE}"'.encode() in browser(cast.admin).get("/o/acme/").content


def test_system_events_do_not_break_the_board(cast) -> None:
    item = ticket(cast, "running")
    progress(ticket=item, type="attempt.check", actor=SYSTEM, data={"attempt": "x"})
    assert browser(cast.admin).get(PAGE).status_code == 200


def test_a_bigger_board_costs_no_more_queries(cast) -> None:
    admin = browser(cast.admin)
    states = ("queued", "running", "awaiting_acceptance", "accepted", "blocked")
    for status in states:
        ticket(cast, status)
    with CaptureQueriesContext(connection) as small:
        admin.get(PAGE)
    for status in states * 6:
        ticket(cast, status)
    with CaptureQueriesContext(connection) as big:
        assert admin.get(PAGE).status_code == 200
    assert len(big) == len(small)

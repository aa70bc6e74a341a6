"""The two gate pages in Chromium at desktop and phone width: the proposal with its Approve
button (Gate 1), the ticket with its diff and Accept button (Gate 2), keyboard focus, and a
streamed event appended to the timeline."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from haao.audit import SYSTEM
from haao.models import AuditEvent
from tests.browser import LIVE_STUB, signed_in
from tests.factories import spec_example
from tickets import services
from tickets.models import Attempt, CheckResult, Ticket
from tickets.state import ticket_transition

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {1440: 900, 390: 844}
DIFF = ("diff --git a/billing/totals.py b/billing/totals.py\n--- a/billing/totals.py\n"
        "+++ b/billing/totals.py\n@@ -1,2 +1,2 @@\n def total(items):\n"
        "-    return sum(items)\n+    return round(sum(items), 2)\n")

# A stand-in for live.js's window.HAAO.live: it records the subscription so the test can
# hand the page events as the socket would. Installed before any page script runs.


@pytest.fixture
def gates(cast: Any) -> Ticket:
    """PAY-R1 awaiting Gate 1 (two tickets) and PAY-1 of PAY-R2 awaiting Gate 2."""
    po = cast.product_owner
    assign_perm("tickets.approve_project", po, cast.project)
    done = services.requirement_create(project=cast.project, actor=po, title="Invoices round",
                                       text="Invoice totals must be rounded to cents.")
    [ticket] = services.requirement_propose(requirement=done, actor=SYSTEM,
                                            specs=[spec_example(title="Round totals")])
    done.refresh_from_db()
    services.requirement_approve(requirement=done, actor=po)
    ticket = Ticket.objects.select_related("project__organization").get(pk=ticket.pk)
    for to in ("queued", "running"):
        ticket_transition(ticket=ticket, to=to, actor=SYSTEM)
    attempt = Attempt.objects.create(
        organization=cast.org, ticket=ticket, number=1, executor="local", endpoint="gpu-box",
        model="qwen2.5-coder-7b", input_tokens=1800, output_tokens=420, cost=Decimal("0"),
        outcome="passed", diff=DIFF, answer="<<<edit billing/totals.py>>>",
        finished_at=timezone.now(), policy_version=3)
    CheckResult.objects.create(organization=cast.org, attempt=attempt, index=1,
                               name="unit tests", command=["pytest", "-q"], exit_code=0,
                               passed=True, duration_ms=2300, stdout_tail="3 passed")
    ticket_transition(ticket=ticket, to="awaiting_acceptance", actor=SYSTEM)

    review = services.requirement_create(project=cast.project, actor=po, title="Refunds",
                                         text="Refund card payments.")
    services.requirement_propose(requirement=review, actor=SYSTEM, specs=[
        spec_example(title="Refund endpoint"), spec_example(title="Refund emails")])
    return ticket


def tab_to(page: Any, text: str) -> list[str]:
    """Press Tab until the focused element reads `text`; its outline and shadow."""
    page.locator("body").focus()
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == text:
            break
    else:
        pytest.fail(f"Tab never reached {text!r}")
    ring: list[str] = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.boxShadow]; })()")
    return ring


def test_both_gates_read_well_at_desktop_and_phone_width(
        page, live_server, cast, gates, shots) -> None:
    signed_in(page, live_server, cast.product_owner)
    base = live_server.url
    for width, height in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})

        page.goto(f"{base}/o/acme/requirements/PAY-R2/")
        approve = page.get_by_role("button", name="Approve 2 tickets")
        assert approve.is_visible()
        assert page.get_by_role("heading", name="Refund endpoint").is_visible()
        assert page.locator("article textarea[name=spec]").count() == 2
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(shots / f"portal-requirement-{width}.png"), full_page=True)
        ring = tab_to(page, "Approve 2 tickets")
        assert (ring[0] != "none" and ring[1] != "0px") or ring[2] != "none", ring

        page.goto(f"{base}/o/acme/tickets/{gates.key}/")
        assert page.get_by_role("button", name="Accept and merge").is_visible()
        assert page.get_by_role("button", name="Reject with feedback").is_visible()
        added = page.locator(".diff-line", has_text="return round(sum(items), 2)")
        removed = page.locator(".diff-line", has_text="-    return sum(items)")
        colour = "e => getComputedStyle(e).backgroundColor"
        assert added.evaluate(colour) not in ("rgba(0, 0, 0, 0)", removed.evaluate(colour))
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(shots / f"portal-ticket-{width}.png"), full_page=True)
        ring = tab_to(page, "Accept and merge")
        assert (ring[0] != "none" and ring[1] != "0px") or ring[2] != "none", ring


def test_a_streamed_event_is_appended_to_the_timeline_once(
        page, live_server, cast, gates) -> None:
    page.add_init_script(LIVE_STUB)
    signed_in(page, live_server, cast.manager)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/o/acme/tickets/{gates.key}/")
    page.wait_for_function("window.__live && window.__live.subs.length === 1")
    sub = page.evaluate("({path: __live.subs[0].path, after: __live.subs[0].options.after})")
    last = AuditEvent.objects.for_org(cast.org).filter(target_label=gates.key).order_by("-seq")[0]
    assert sub == {"path": f"ws/o/acme/tickets/{gates.key}/events/", "after": last.seq}
    before = page.locator("#timeline li").count()
    event = {"seq": last.seq + 1, "created_at": "2025-01-31T14:00:00+00:00",
             "type": "guardrail.refused", "actor_type": "system", "actor_label": "HAAO",
             "target_type": "tickets.ticket", "target_label": gates.key,
             "data": {"rule": "allowed_paths", "point": "edit",
                      "message": "secrets/.env is outside the allowed paths"}}
    page.evaluate("e => { const o = __live.subs[0].options; o.onEvent(e); o.onEvent(e); }",
                  event)
    assert page.locator("#timeline li").count() == before + 1
    assert "secrets/.env is outside" in page.locator("#timeline li").last.inner_text()
    assert page.locator("[data-live-status]").inner_text() == "Live"


def test_a_product_owner_edits_a_proposed_ticket_through_its_fields_and_approves(
        page, live_server, cast, gates, shots) -> None:
    signed_in(page, live_server, cast.product_owner)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/o/acme/requirements/PAY-R2/")
    card = page.locator("#ticket-PAY-2")
    assert card.get_by_text("Expected cost").is_visible()
    card.get_by_text("Edit PAY-2", exact=True).click()
    card.get_by_label("Objective", exact=True).fill("Refund a card payment via POST /refunds.")
    check = card.locator("fieldset", has_text="Check 1")
    check.get_by_label("Command", exact=True).fill("pytest -q tests/test_refunds.py")
    check.get_by_label("Output must contain").fill("4 passed")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(shots / "portal-gate1-fields-390.png"), full_page=True)
    card.get_by_role("button", name="Save changes to PAY-2").click()

    # Back on the page, the card reads the new objective and check.
    page.wait_for_url("**/requirements/PAY-R2/#ticket-PAY-2")
    card = page.locator("#ticket-PAY-2")
    assert card.get_by_role("paragraph").filter(
        has_text="Refund a card payment via POST /refunds.").is_visible()
    row = card.locator("tbody tr", has_text="unit tests")
    assert "pytest -q tests/test_refunds.py" in row.inner_text()
    assert "output contains “4 passed”" in row.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page.get_by_role("button", name="Approve 2 tickets").click()
    page.locator("[data-confirm-ok]").click()
    page.wait_for_url("**/projects/PAY/")
    ticket = Ticket.objects.get(project=cast.project, number=2)
    assert ticket.status == "approved"
    assert ticket.spec["objective"] == "Refund a card payment via POST /refunds."
    assert ticket.spec["definition_of_done"] == [
        {"name": "unit tests", "command": ["pytest", "-q", "tests/test_refunds.py"],
         "expected_exit_code": 0, "timeout_seconds": 120, "output_must_contain": ["4 passed"]}]

"""The projects list, a project's board and "waiting for my decision" in Chromium, at desktop
and phone width: columns, live card moves, the primary action reachable by keyboard."""

from __future__ import annotations

from typing import Any

import pytest
from guardian.shortcuts import assign_perm

from haao.models import AuditEvent
from tests.browser import signed_in
from tests.factories import RequirementFactory, TicketFactory
from tickets.models import Attempt, Ticket

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {1440: 900, 390: 844}
COLUMNS = ["Queued", "In progress", "To accept", "Accepted", "Stopped"]


@pytest.fixture
def board(cast: Any) -> dict[str, Ticket]:
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    approved = RequirementFactory(project=cast.project, status="approved",
                                  title="Invoices round to cents")
    RequirementFactory(project=cast.project, status="proposed", title="Refunds by card")
    tickets = {}
    for status, title in [("queued", "Add a rounding helper"),
                          ("queued", "Document the rounding rule"),
                          ("running", "Round invoice totals half-up"),
                          ("awaiting_acceptance", "Show totals in the PDF"),
                          ("accepted", "Store amounts as decimals"),
                          ("blocked", "Migrate old invoices")]:
        tickets[title] = TicketFactory(requirement=approved, status=status, title=title,
                                       complexity=3)
    running = tickets["Round invoice totals half-up"]
    Attempt.objects.create(organization=cast.org, ticket=running, number=1, executor="local")
    return tickets


def card_column(page: Any, key: str) -> str:
    return page.eval_on_selector(f'[data-ticket="{key}"]',
                                 "card => card.closest('[data-column]').dataset.column")


def feed(page: Any, event: dict[str, Any]) -> None:
    """Hand one stream event to the board, as live.js would, and wait until it is applied."""
    page.evaluate("event => { window.HAAO.board.handle(event); return window.HAAO.board.idle(); }",
                  event)


def test_the_board_and_the_decisions_read_well_at_desktop_and_phone_width(
        page, live_server, cast, board, shots) -> None:
    signed_in(page, live_server, cast.product_owner)
    base = live_server.url
    for width, height in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})

        page.goto(f"{base}/o/acme/projects/")
        assert page.get_by_role("link", name="Payments").is_visible()
        page.screenshot(path=str(shots / f"portal-projects-{width}.png"), full_page=True)

        page.goto(f"{base}/o/acme/")
        panel = page.locator("[data-waiting]")
        assert panel.get_by_text("Refunds by card").is_visible()
        assert panel.get_by_text("Show totals in the PDF").is_visible()
        page.screenshot(path=str(shots / f"portal-overview-{width}.png"), full_page=True)

        page.goto(f"{base}/o/acme/projects/PAY/")
        headings = page.locator("[data-column] h3 span.truncate").all_inner_texts()
        assert headings == COLUMNS
        assert page.locator("[data-wip]").inner_text().startswith("In progress 1 / 3")
        # The page never scrolls sideways; the board does, inside its own region.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        # At desktop width every column fits; at phone width the board scrolls sideways.
        assert page.evaluate("(() => { const r = document.querySelector("
                             "'[data-board] [role=region]'); "
                             "return r.scrollWidth > r.clientWidth; })()") == (width == 390)
        page.screenshot(path=str(shots / f"portal-project-{width}.png"), full_page=True)

        # Keyboard: Tab reaches "New requirement" and shows a focus ring on it.
        page.locator("body").focus()
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == "New requirement":
                break
        else:
            pytest.fail("Tab never reached the New requirement action")
        ring = page.evaluate("(() => { const s = getComputedStyle(document.activeElement);"
                             " return [s.outlineStyle, s.outlineWidth, s.boxShadow]; })()")
        assert (ring[0] != "none" and ring[1] != "0px") or ring[2] != "none", ring


def test_stream_events_move_cards_and_fill_progress_without_moving_the_columns(
        page, live_server, cast, board) -> None:
    signed_in(page, live_server, cast.admin)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/o/acme/projects/PAY/")
    page.wait_for_function("window.HAAO && window.HAAO.board")
    after = int(page.get_attribute("[data-board]", "data-after"))
    assert after == max(AuditEvent.objects.for_org(cast.org).values_list("seq", flat=True),
                        default=0)
    widths = page.eval_on_selector_all("[data-column]", "cols => cols.map(c => c.offsetWidth)")

    queued = board["Add a rounding helper"]
    feed(page, {"seq": after + 1, "type": "ticket.transition", "target_label": queued.key,
                "data": {"from": "queued", "to": "running"}})
    assert card_column(page, queued.key) == "in_progress"
    assert page.locator("[data-wip-count]").inner_text() == "2"
    assert page.locator(f'[data-ticket="{queued.key}"] [data-status-badge]').inner_text() \
        == "Running"

    running = board["Round invoice totals half-up"]
    row = page.locator(f'[data-ticket="{running.key}"] [data-progress]')
    height = row.bounding_box()["height"]
    feed(page, {"seq": after + 2, "type": "attempt.check", "target_label": running.key,
                "data": {"ticket": running.key, "attempt": 1, "index": 1, "of": 2,
                         "passed": True}})
    feed(page, {"seq": after + 3, "type": "attempt.tokens", "target_label": running.key,
                "data": {"ticket": running.key, "attempt": 1, "tokens": 2048}})
    assert "Checks 1/2" in row.inner_text() and "2,048" in row.inner_text()
    assert row.bounding_box()["height"] == height

    # A ticket the page never showed: its card is fetched and inserted in its column.
    fresh = TicketFactory(requirement=running.requirement, status="queued",
                          title="Brand new ticket")
    feed(page, {"seq": after + 4, "type": "ticket.transition", "target_label": fresh.key,
                "data": {"from": "approved", "to": "queued"}})
    assert card_column(page, fresh.key) == "queued"
    assert page.locator('[data-column="queued"] [data-column-count]').inner_text() == "2"

    assert page.eval_on_selector_all("[data-column]",
                                     "cols => cols.map(c => c.offsetWidth)") == widths
    assert page.locator("[data-live-status]").get_attribute("aria-live") == "polite"
    assert page.locator("[data-live-status]").inner_text() in {
        "Connecting…", "Reconnecting…", "Live", "Snapshot", "Not live"}

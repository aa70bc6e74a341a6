"""The portal end to end in Chromium: a product owner takes a requirement through both gates
while real workers and the scripted model servers do the work, and the board moves live over
the WebSocket (daphne, the Redis channel layer) without a reload. A manager reads the same
project; an outsider's socket is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from sample_models import AnthropicServer, OpenAIServer
from sample_models.base import last_user_text
from sample_models.rounding import RIGHT_FIX
from tests.loop import (
    Processes,
    TechLead,
    add_endpoints,
    wait_for,
)
from tests.samples import invoice_ticket
from tickets.models import Project, Ticket

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long portal passphrase 42"
FEEDBACK = "Name the rounding mode in a comment above the return (review note F-77)."


def sign_in(chromium: Any, url: str, user: Any, width: int = 1440) -> Any:
    """A fresh browser context signed in through the login form."""
    # Hashed as the web process expects (the suite's own fast hasher is not in its list).
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])
    context = chromium.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").first.click()
    page.wait_for_load_state()
    assert "/accounts/login/" not in page.url, page.locator("main").inner_text()[:1000]
    return page


def column_of(page: Any, key: str) -> str | None:
    return page.evaluate("key => { const card = document.querySelector(`[data-ticket='${key}']`);"
                         " return card ? card.closest('[data-column]').dataset.column : null; }",
                         key)


def confirm(page: Any) -> None:
    """Press the confirm button of the portal's dialog, if it asked."""
    ok = page.locator("[data-confirm-ok]")
    ok.wait_for(state="visible", timeout=5_000)
    ok.click()


def test_a_product_owner_takes_a_requirement_through_both_gates_live(
        chromium: Any, cast: Any, project: Project, coder: OpenAIServer,
        cloud: AnthropicServer, processes: Processes, shots: Path) -> None:
    cloud.answer = TechLead(tickets=[
        invoice_ticket(),
        invoice_ticket(title="Round money half-up, documented",
                       objective="Same rounding fix, with a comment naming the mode.")])
    coder.answer = lambda request: RIGHT_FIX
    add_endpoints(cast, coder, cloud)
    processes.start_worker(concurrency=3)
    processes.start_beat()
    url = processes.start_web()

    po = sign_in(chromium, url, cast.product_owner)
    po.goto(f"{url}/o/acme/projects/INV/")
    form = po.locator("#new-requirement")
    form.locator("input[name=title]").fill("Round totals correctly")
    form.locator("textarea[name=text]").fill(
        "Invoice totals must round half a cent up, like our accountants do.")
    form.locator("button[type=submit]").click()

    # The requirement page waits for the Tech Lead and shows the proposal when it arrives.
    po.wait_for_url(re.compile(r"/o/acme/requirements/INV-R1/"))
    approve = po.locator("#approve-button")
    approve.wait_for(state="visible", timeout=60_000)
    assert approve.inner_text().strip() == "Approve 2 tickets"

    # A bad edit is refused with the schema's words next to the ticket; nothing is stored.
    first = Ticket.objects.get(project=project, number=1)
    po.locator(f"#ticket-{first.key} summary", has_text="Advanced: edit as JSON").click()
    editor = po.locator(f"#ticket-{first.key} textarea[name=spec]")
    spec = json.loads(editor.input_value())
    editor.fill(json.dumps({**spec, "complexity": 9}, indent=1))
    po.locator(f"#ticket-{first.key} button[type=submit]", has_text="Save spec").click()
    card = po.locator(f"#ticket-{first.key}")
    assert "$.complexity" in card.inner_text()
    assert Ticket.objects.get(pk=first.pk).spec["complexity"] == spec["complexity"]
    # A good one is stored.
    editor = po.locator(f"#ticket-{first.key} textarea[name=spec]")
    editor.fill(json.dumps({**spec, "title": "Round money half-up (edited at Gate 1)"},
                           indent=1))
    po.locator(f"#ticket-{first.key} button[type=submit]", has_text="Save spec").click()
    wait_for(lambda: Ticket.objects.get(pk=first.pk).title.endswith("(edited at Gate 1)"),
             what="the edited title", processes=processes)
    po.screenshot(path=str(shots / "flow-gate1-1440.png"), full_page=True)

    po.locator("#approve-button").click()
    confirm(po)
    po.wait_for_url(re.compile(r"/o/acme/projects/INV/"))
    po.evaluate("window.__notReloaded = true")

    # The board moves by itself while the models work: both tickets reach Gate 2.
    keys = ["INV-1", "INV-2"]
    po.wait_for_function(
        "keys => keys.every(k => { const c = document.querySelector(`[data-ticket='${k}']`);"
        " return c && c.closest('[data-column]').dataset.column === 'awaiting'; })",
        arg=keys, timeout=120_000)
    assert po.evaluate("window.__notReloaded") is True
    po.screenshot(path=str(shots / "flow-board-1440.png"), full_page=True)

    # Gate 2: accept one ...
    po.goto(f"{url}/o/acme/tickets/INV-1/")
    po.screenshot(path=str(shots / "flow-ticket-1440.png"), full_page=True)
    po.locator("#accept-button").click()
    wait_for(lambda: Ticket.objects.get(project=project, number=1).merged_commit,
             what="the merge", processes=processes)
    # ... and reject the other with feedback, which the next attempt's coder reads.
    po.goto(f"{url}/o/acme/tickets/INV-2/")
    po.locator("#gate textarea[name=feedback]").fill(FEEDBACK)
    po.locator("button", has_text="Reject with feedback").click()
    po.wait_for_function("() => document.body.innerText.includes('F-77')")
    wait_for(lambda: any("F-77" in last_user_text(r.body) for r in coder.requests
                         if r.path == "/v1/chat/completions"),
             what="the next attempt to be given the feedback", processes=processes)
    # The ticket page, still open, shows the new attempt arriving live.
    po.wait_for_function(
        "() => /attempt 2/i.test(document.querySelector('#timeline')?.innerText || '')",
        timeout=60_000)

    # A manager reads the same project, with no gate actions.
    manager = sign_in(chromium, url, cast.manager, width=390)
    manager.goto(f"{url}/o/acme/projects/INV/")
    assert column_of(manager, "INV-1") == "accepted"
    assert manager.locator("#new-requirement").count() == 0
    manager.screenshot(path=str(shots / "flow-board-manager-390.png"), full_page=True)
    manager.goto(f"{url}/o/acme/tickets/INV-1/")
    assert manager.locator("#accept-button").count() == 0

    # Another organization's admin gets no stream of this project.
    outsider = sign_in(chromium, url, cast.outsider)
    outcome = outsider.evaluate(
        """url => new Promise(resolve => {
             const socket = new WebSocket(url); const got = [];
             socket.onmessage = m => got.push(m.data);
             socket.onclose = e => resolve({code: e.code, messages: got.length});
           })""", url.replace("http", "ws") + "/ws/o/acme/projects/INV/events/")
    assert outcome["messages"] == 0 and outcome["code"] in (4403, 4404), outcome

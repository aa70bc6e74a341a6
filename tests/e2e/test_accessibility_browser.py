"""Every portal page in Chromium at desktop and phone width, checked by axe-core: no
serious or critical violation, and nothing wider than a 390 px screen (docs/accessibility.md)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from accounts import services as account_services
from accounts.sso import services as sso_services
from agents import services as agent_services
from haao.audit import SYSTEM
from tests.browser import signed_in, skip_or_fail
from tests.factories import spec_example
from tickets import services
from tickets.models import Attempt, CheckResult, Ticket
from tickets.state import ticket_transition

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Installed by `make axe` (part of `make test`) from tests/e2e/axe/package-lock.json.
AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {1440: 900, 390: 844}
BLOCKING = ("serious", "critical")
DIFF = ("diff --git a/billing/totals.py b/billing/totals.py\n--- a/billing/totals.py\n"
        "+++ b/billing/totals.py\n@@ -1,2 +1,2 @@\n def total(items):\n"
        "-    return sum(items)\n+    return round(sum(items), 2)\n")
RUN_AXE = """async () => {
    const result = await axe.run(document, {resultTypes: ['violations']});
    return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        targets: v.nodes.map(n => n.target.join(' '))}));
}"""


def seed(cast: Any) -> dict[str, str]:
    """One of everything a page lists: a requirement at each gate, an attempt with checks,
    an endpoint, an invitation, a token, a domain. Returns the ids the URLs need."""
    po = cast.product_owner
    assign_perm("tickets.approve_project", po, cast.project)
    delivered = services.requirement_create(
        project=cast.project, actor=po, title="Invoices round",
        text="Invoice totals must be rounded to cents.")
    [ticket] = services.requirement_propose(requirement=delivered, actor=SYSTEM,
                                            specs=[spec_example(title="Round totals")])
    delivered.refresh_from_db()
    services.requirement_approve(requirement=delivered, actor=po)
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

    # A long unbroken title (an address) must wrap, not widen a phone's page.
    proposed = services.requirement_create(
        project=cast.project, actor=po, text="Refund card payments.",
        title="Refunds via https://payments.example.test/api/v1/refunds/"
              "0f8c2a4e9b7d4c1e8a6f3b2d1c0e9f8a7b6c5d4e3f2a1b0c")
    services.requirement_propose(requirement=proposed, actor=SYSTEM, specs=[
        spec_example(title="Refund endpoint"), spec_example(title="Refund emails")])

    endpoint = agent_services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-test",
        values={"name": "Claude", "kind": "anthropic", "base_url": "http://93.184.215.14",
                "model": "claude-sonnet-4-6", "role": "tech_lead"})
    account_services.invitation_create(organization=cast.org, email="new@acme.test",
                                       role="member", actor=cast.admin)
    account_services.api_token_create(organization=cast.org, user=cast.admin, name="CI",
                                      scopes=["read"], expires_at=timezone.now()
                                      + timedelta(days=30))
    sso_services.organization_domain_add(organization=cast.org, domain="acme.test",
                                         actor=cast.admin)
    return {"gate1": proposed.key, "gate2": delivered.key, "ticket": ticket.key,
            "endpoint": str(endpoint.id), "member": str(cast.membership(cast.member).id)}


def pages(ids: dict[str, str]) -> list[tuple[str, str, int]]:
    """(who, path, expected status) for every portal page."""
    o = "/o/acme"
    return [
        ("anonymous", "/accounts/login/", 200),
        ("admin", "/", 200),
        ("admin", f"{o}/", 200),
        ("admin", f"{o}/projects/", 200),
        ("admin", f"{o}/projects/PAY/", 200),
        ("admin", f"{o}/projects/PAY/settings/", 200),
        ("admin", f"{o}/projects/new/", 200),
        ("product_owner", f"{o}/requirements/{ids['gate1']}/", 200),
        ("product_owner", f"{o}/requirements/{ids['gate2']}/", 200),
        ("product_owner", f"{o}/tickets/{ids['ticket']}/", 200),
        ("manager", f"{o}/reports/costs/", 200),
        ("manager", f"{o}/reports/tickets/", 200),
        ("admin", f"{o}/admin/members/", 200),
        ("admin", f"{o}/admin/members/{ids['member']}/", 200),
        ("admin", f"{o}/admin/invitations/", 200),
        ("admin", f"{o}/tokens/", 200),
        ("admin", f"{o}/admin/sso/", 200),
        ("admin", f"{o}/admin/sso/domains/", 200),
        ("admin", f"{o}/admin/audit/", 200),
        ("admin", f"{o}/admin/endpoints/", 200),
        ("admin", f"{o}/admin/endpoints/{ids['endpoint']}/", 200),
        ("admin", f"{o}/admin/policies/", 200),
        ("admin", f"{o}/projects/NOPE/", 404),
    ]


def test_every_portal_page_passes_axe_and_fits_a_phone(chromium, live_server, cast) -> None:
    if not AXE.is_file():
        skip_or_fail(f"axe-core is not installed at {AXE} (make axe)")
    ids = seed(cast)
    contexts: dict[str, Any] = {}
    for who in ("anonymous", "admin", "product_owner", "manager"):
        context = chromium.new_context()
        context.set_default_timeout(15_000)
        context.add_init_script(path=str(AXE))
        page = context.new_page()
        if who != "anonymous":
            signed_in(page, live_server, getattr(cast, who))
        contexts[who] = page

    problems: list[str] = []
    counts: list[str] = []
    try:
        for who, path, status in pages(ids):
            page = contexts[who]
            for width, height in WIDTHS.items():
                page.set_viewport_size({"width": width, "height": height})
                response = page.goto(f"{live_server.url}{path}")
                assert response is not None and response.status == status, (path, who)
                page.wait_for_load_state("load")
                violations = page.evaluate(RUN_AXE)
                blocking = [v for v in violations if v["impact"] in BLOCKING]
                counts.append(f"{path} @{width}: {len(blocking)}")
                for v in blocking:
                    problems.append(f"{path} @{width} as {who}: {v['id']} ({v['impact']}) "
                                    f"{v['help']}: {', '.join(v['targets'][:8])}")
                if width == 390:
                    wide = page.evaluate(
                        "document.documentElement.scrollWidth - window.innerWidth")
                    if wide > 0:
                        problems.append(f"{path} @390 as {who}: the page is {wide} px wider "
                                        "than the screen")
    finally:
        for page in contexts.values():
            page.context.close()
    print("\n".join(counts))
    assert not problems, "\n".join(problems)


def test_the_confirm_dialog_is_centred_and_passes_axe(chromium, live_server, cast) -> None:
    if not AXE.is_file():
        skip_or_fail(f"axe-core is not installed at {AXE} (make axe)")
    ids = seed(cast)
    context = chromium.new_context()
    context.set_default_timeout(15_000)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    try:
        signed_in(page, live_server, cast.product_owner)
        for width, height in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": height})
            page.goto(f"{live_server.url}/o/acme/tickets/{ids['ticket']}/")
            page.get_by_text("Cancel this ticket…").click()
            page.get_by_role("button", name="Cancel ticket").click()
            dialog = page.get_by_role("dialog")
            dialog.wait_for(state="visible")
            box = dialog.bounding_box()
            assert box is not None
            # The area a fixed box fills: the viewport without the scrollbar's gutter.
            seen_width, seen_height = page.evaluate("""() => {
                const probe = document.createElement('div');
                probe.style.cssText = 'position:fixed;inset:0;pointer-events:none';
                document.body.appendChild(probe);
                const r = probe.getBoundingClientRect(); probe.remove();
                return [r.width, r.height]; }""")
            left, right = box["x"], seen_width - box["x"] - box["width"]
            top, bottom = box["y"], seen_height - box["y"] - box["height"]
            assert abs(left - right) <= 1 and abs(top - bottom) <= 1, (width, box)
            assert left >= 8, "the dialog keeps a margin on a phone"
            blocking = [v for v in page.evaluate(RUN_AXE) if v["impact"] in BLOCKING]
            assert not blocking, blocking
            page.keyboard.press("Escape")
            dialog.wait_for(state="hidden")
    finally:
        context.close()

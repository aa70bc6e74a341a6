"""The portal's gate pages: a requirement's proposal (Gate 1) and a ticket (Gate 2)."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agents.models import InferenceEndpoint, ModelCall
from haao.audit import SYSTEM, Actor, audit_record, seal
from haao.models import AuditEvent
from tests.factories import MembershipFactory, engine_options, spec_example
from tests.fixtures import portal_client
from tickets import services
from tickets.models import Attempt, CheckResult, Requirement, Ticket, TicketStatus
from tickets.services.engine import progress, ticket_audit_skipped, ticket_audited
from tickets.state import ticket_transition


@pytest.fixture
def po(cast):
    assign_perm("tickets.approve_project", cast.product_owner, cast.project)
    return cast.product_owner


def proposed(cast, po) -> tuple[Requirement, list[Ticket]]:
    requirement = services.requirement_create(project=cast.project, actor=po,
                                              title="Invoices round", text="Round totals.")
    tickets = services.requirement_propose(
        requirement=requirement, actor=SYSTEM,
        specs=[spec_example(title="First"), spec_example(title="Second"),
               spec_example(title="Third")])
    requirement.refresh_from_db()
    return requirement, tickets


def url(key: str, tail: str = "") -> str:
    kind = "requirements" if "-R" in key else "tickets"
    return f"/o/acme/{kind}/{key}/{tail}"


def order_of(requirement: Requirement) -> list[str]:
    return [t.title for t in Ticket.objects.filter(requirement=requirement,
                                                   status=TicketStatus.PROPOSED)
            .order_by("order")]


# --- Gate 1: who sees what --------------------------------------------------------------------

def test_a_granted_product_owner_sees_editable_cards_and_the_approve_button(cast, po) -> None:
    proposed(cast, po)
    response = portal_client(po).get(url("PAY-R1"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Approve 3 tickets" in body and "Save spec" in body and "Add ticket" in body
    assert 'name="spec"' in body and "Drop" in body
    assert '&quot;title&quot;: &quot;First&quot;' in body


def test_a_manager_reads_the_proposal_without_any_gate_control(cast, po) -> None:
    proposed(cast, po)
    response = portal_client(cast.manager).get(url("PAY-R1"))
    body = response.content.decode()
    assert response.status_code == 200 and "First" in body and "Read only" in body
    assert "Approve 3" not in body and "Save spec" not in body


def test_a_manager_posting_an_approval_gets_403_and_nothing_changes(cast, po) -> None:
    requirement, _ = proposed(cast, po)
    response = portal_client(cast.manager).post(url("PAY-R1", "approve/"))
    assert response.status_code == 403
    assert Requirement.objects.get(pk=requirement.pk).status == "proposed"


def test_a_product_owner_with_only_a_view_grant_reads_but_may_not_decide(cast, po) -> None:
    proposed(cast, po)
    other_po = MembershipFactory(organization=cast.org, role="product_owner").user
    assign_perm("tickets.view_project", other_po, cast.project)
    client = portal_client(other_po)
    assert "Read only" in client.get(url("PAY-R1")).content.decode()
    assert client.post(url("PAY-R1", "approve/")).status_code == 403


@pytest.mark.parametrize("who", ["member", "product_owner_without_grant", "outsider"])
def test_people_who_cannot_see_the_project_get_404(cast, po, who) -> None:
    proposed(cast, po)
    other = {"member": cast.member, "outsider": cast.outsider}.get(who)
    if other is None:
        other = MembershipFactory(organization=cast.org, role="product_owner").user
    client = portal_client(other)
    assert client.get(url("PAY-R1")).status_code == 404
    assert client.post(url("PAY-R1", "approve/")).status_code == 404
    assert client.get(url("PAY-1")).status_code == 404


def test_a_malformed_or_unknown_key_is_404(cast, po) -> None:
    client = portal_client(po)
    assert client.get("/o/acme/requirements/pay-r1/").status_code == 404
    assert client.get(url("PAY-R99")).status_code == 404
    assert client.get(url("PAY-999")).status_code == 404


def test_an_anonymous_visitor_is_sent_to_sign_in(cast, po) -> None:
    proposed(cast, po)
    response = Client().get(url("PAY-R1"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- Gate 1: actions -------------------------------------------------------------------------

def test_approving_queues_every_ticket_and_lands_on_the_project_board(cast, po) -> None:
    requirement, _ = proposed(cast, po)
    response = portal_client(po).post(url("PAY-R1", "approve/"))
    assert response.status_code == 302 and response["Location"] == "/o/acme/projects/PAY/"
    assert Requirement.objects.get(pk=requirement.pk).status == "approved"
    assert set(Ticket.objects.filter(requirement=requirement)
               .values_list("status", flat=True)) == {"approved"}
    assert AuditEvent.objects.for_org(cast.org).filter(type="requirement.approved").exists()


def test_approving_twice_says_why_instead_of_failing(cast, po) -> None:
    proposed(cast, po)
    client = portal_client(po)
    client.post(url("PAY-R1", "approve/"))
    response = client.post(url("PAY-R1", "approve/"))
    assert response.status_code == 409
    assert "not awaiting approval" in response.content.decode()


def test_saving_a_valid_spec_changes_the_ticket(cast, po) -> None:
    _, tickets = proposed(cast, po)
    spec = spec_example(title="Round half up", complexity=3)
    response = portal_client(po).post(url("PAY-R1", "tickets/PAY-1/spec/"),
                                   {"spec": json.dumps(spec)})
    assert response.status_code == 302
    ticket = Ticket.objects.get(pk=tickets[0].pk)
    assert ticket.title == "Round half up" and ticket.complexity == 3
    assert AuditEvent.objects.for_org(cast.org).filter(type="ticket.spec_edited").exists()


def test_a_spec_breaking_the_schema_comes_back_with_its_paths_and_the_text_kept(cast, po) -> None:
    _, tickets = proposed(cast, po)
    typed = json.dumps(spec_example(complexity=9, title=""), indent=1)
    response = portal_client(po).post(url("PAY-R1", "tickets/PAY-1/spec/"), {"spec": typed})
    assert response.status_code == 400
    body = response.content.decode()
    assert "$.complexity" in body and "must be at most 5" in body and "$.title" in body
    assert "Nothing was stored" in body
    assert "&quot;complexity&quot;: 9" in body  # the user's text, escaped, still in the editor
    assert Ticket.objects.get(pk=tickets[0].pk).title == "First"


def test_text_that_is_not_json_is_refused_naming_the_line(cast, po) -> None:
    proposed(cast, po)
    response = portal_client(po).post(url("PAY-R1", "tickets/PAY-1/spec/"),
                                   {"spec": '{"title": "x",\n oops}'})
    assert response.status_code == 400
    assert "not valid JSON" in response.content.decode() and "line 2" in response.content.decode()


def test_a_json_array_is_refused_as_not_an_object(cast, po) -> None:
    proposed(cast, po)
    response = portal_client(po).post(url("PAY-R1", "add/"), {"spec": "[1, 2]"})
    assert response.status_code == 400 and "must be a JSON object" in response.content.decode()
    assert Ticket.objects.count() == 3


def test_adding_a_ticket_appends_it_to_the_proposal(cast, po) -> None:
    requirement, _ = proposed(cast, po)
    response = portal_client(po).post(url("PAY-R1", "add/"),
                                   {"spec": json.dumps(spec_example(title="Fourth"))})
    assert response.status_code == 302 and response["Location"].endswith("#ticket-PAY-4")
    assert order_of(requirement) == ["First", "Second", "Third", "Fourth"]


def test_adding_an_invalid_ticket_stores_nothing_and_reopens_the_editor(cast, po) -> None:
    proposed(cast, po)
    response = portal_client(po).post(url("PAY-R1", "add/"),
                                   {"spec": json.dumps(spec_example(allowed_paths="x"))})
    assert response.status_code == 400
    assert "$.allowed_paths" in response.content.decode()
    assert 'id="add-ticket" open' in response.content.decode()
    assert Ticket.objects.count() == 3


def test_moving_a_ticket_down_and_up_reorders_the_proposal(cast, po) -> None:
    requirement, _ = proposed(cast, po)
    client = portal_client(po)
    assert client.post(url("PAY-R1", "tickets/PAY-1/move/"),
                       {"direction": "down"}).status_code == 302
    assert order_of(requirement) == ["Second", "First", "Third"]
    client.post(url("PAY-R1", "tickets/PAY-3/move/"), {"direction": "up"})
    assert order_of(requirement) == ["Second", "Third", "First"]
    assert AuditEvent.objects.for_org(cast.org).filter(type="requirement.reordered").count() == 2


def test_a_bad_direction_is_a_400(cast, po) -> None:
    requirement, _ = proposed(cast, po)
    response = portal_client(po).post(url("PAY-R1", "tickets/PAY-1/move/"), {"direction": "left"})
    assert response.status_code == 400 and "up or down" in response.content.decode()
    assert order_of(requirement) == ["First", "Second", "Third"]


def test_a_dropped_ticket_leaves_the_proposal_and_is_not_approved(cast, po) -> None:
    _, tickets = proposed(cast, po)
    client = portal_client(po)
    assert client.post(url("PAY-R1", "tickets/PAY-2/drop/")).status_code == 302
    body = client.get(url("PAY-R1")).content.decode()
    assert "Approve 2 tickets" in body and "Dropped (1)" in body
    client.post(url("PAY-R1", "approve/"))
    assert Ticket.objects.get(pk=tickets[1].pk).status == "cancelled"
    assert Ticket.objects.get(pk=tickets[0].pk).status == "approved"


def test_a_ticket_of_another_requirement_is_404_on_its_card_actions(cast, po) -> None:
    proposed(cast, po)
    response = portal_client(po).post(url("PAY-R1", "tickets/PAY-99/drop/"))
    assert response.status_code == 404


def test_while_decomposing_the_page_waits_and_subscribes_to_the_project_stream(cast, po) -> None:
    services.requirement_create(project=cast.project, actor=po, title="T", text="x")
    seal(cast.org.pk)  # the writers' commits seal their events
    body = portal_client(po).get(url("PAY-R1")).content.decode()
    assert "breaking this requirement into tickets" in body
    assert 'data-stream="ws/o/acme/projects/PAY/events/"' in body
    last = AuditEvent.objects.for_org(cast.org).order_by("-seq").first()
    assert f'data-after="{last.seq}"' in body
    assert "js/live.js" in body and "js/ticket.js" in body and "Refresh" in body


def test_a_failed_decomposition_shows_the_reason_and_what_to_do(cast, po) -> None:
    requirement = services.requirement_create(project=cast.project, actor=po, title="T",
                                              text="x")
    services.requirement_fail(requirement=requirement, reason="The model kept inventing files.",
                              actor=SYSTEM)
    body = portal_client(po).get(url("PAY-R1")).content.decode()
    assert "Decomposition failed" in body and "inventing files" in body
    assert "Next step" in body and 'href="/o/acme/projects/PAY/"' in body


# --- Gate 2 ----------------------------------------------------------------------------------

def run_to_acceptance(ticket: Ticket, *, diff: str = "") -> Attempt:
    """Drive `ticket` (approved) to awaiting acceptance with one passed attempt."""
    for to in ("queued", "running"):
        ticket_transition(ticket=ticket, to=to, actor=SYSTEM)
    attempt = Attempt.objects.create(
        organization=ticket.organization, ticket=ticket, number=1, executor="local",
        endpoint="gpu-box", model="qwen2.5-coder", input_tokens=1200, output_tokens=300,
        cost=Decimal("0.001250"), outcome="passed", diff=diff, answer="edit blocks here",
        finished_at=timezone.now(), policy_version=4)
    CheckResult.objects.create(
        organization=ticket.organization, attempt=attempt, index=1, name="unit tests",
        command=["pytest", "-q"], exit_code=0, passed=True, duration_ms=2300,
        stdout_tail="3 passed in 0.1s", stderr_tail="")
    progress(ticket=ticket, type="attempt.check", attempt=attempt,
             data={"check": "unit tests", "index": 1, "of": 1, "passed": True,
                   "exit_code": 0, "duration_ms": 2300})
    ticket_transition(ticket=ticket, to="awaiting_acceptance", actor=SYSTEM)
    return attempt


@pytest.fixture
def awaiting(cast, po) -> Ticket:
    requirement, tickets = proposed(cast, po)
    services.requirement_approve(requirement=requirement, actor=po)
    ticket = Ticket.objects.select_related("project__organization").get(pk=tickets[0].pk)
    run_to_acceptance(ticket, diff=(
        "diff --git a/billing/totals.py b/billing/totals.py\n--- a/billing/totals.py\n"
        "+++ b/billing/totals.py\n@@ -1,2 +1,2 @@\n def total(items):\n"
        "-    return sum(items)\n+    return round(sum(items), 2)  # <script>x</script>\n"))
    return ticket


def test_the_ticket_page_shows_spec_attempt_checks_diff_and_costs(cast, po, awaiting) -> None:
    seal(cast.org.pk)  # the writers' commits seal their events
    body = portal_client(po).get(url("PAY-1")).content.decode()
    assert "Awaiting acceptance" in body and 'href="/o/acme/requirements/PAY-R1/"' in body
    assert 'href="/o/acme/projects/PAY/"' in body
    assert "Invoice totals must be rounded" in body and "pytest -q" in body
    assert "gpu-box" in body and "qwen2.5-coder" in body and "0.00125 USD" in body
    assert "3 passed in 0.1s" in body and "exit 0" in body and "2.3 s" in body
    assert "bg-green-50" in body and "bg-red-50" in body
    assert "&lt;script&gt;x&lt;/script&gt;" in body and "<script>x</script>" not in body
    assert "edit blocks here" in body and "Policy version" in body
    assert "Accept and merge" in body and "Reject with feedback" in body
    assert "awaiting acceptance" in body  # the timeline's last transition
    last = AuditEvent.objects.for_org(cast.org).filter(target_label="PAY-1").order_by("-seq")[0]
    assert f'data-after="{last.seq}"' in body
    assert 'data-stream="ws/o/acme/tickets/PAY-1/events/"' in body


def test_model_calls_are_broken_down_by_role_local_and_cloud(cast, po, awaiting) -> None:
    def endpoint(name: str, kind: str) -> InferenceEndpoint:
        return InferenceEndpoint.objects.create(
            organization=cast.org, name=name, kind=kind, base_url="http://127.0.0.1:9/v1",
            model="m", role="coder")

    local, cloud = endpoint("gpu-box", "openai_compatible"), endpoint("claude", "anthropic")
    for source, role, cost in [(local, "code", "0.000100"), (local, "code", "0.000200"),
                               (cloud, "audit", "0.012000")]:
        ModelCall.objects.create(organization=cast.org, ticket=awaiting, endpoint=source,
                                 endpoint_name=source.name, model="m", role=role,
                                 is_cloud=source is cloud, input_tokens=100, output_tokens=20,
                                 cost=Decimal(cost), outcome="ok")
    body = portal_client(cast.manager).get(url("PAY-1")).content.decode()
    assert "Write code" in body and "Audit a diff" in body and "2 calls" in body
    assert "0.0003 USD" in body and "0.012 USD" in body and "0.0123 USD" in body


def test_accepting_shows_the_new_state(cast, po, awaiting) -> None:
    client = portal_client(po)
    response = client.post(url("PAY-1", "accept/"), follow=True)
    assert response.redirect_chain[-1][0] == url("PAY-1")
    body = response.content.decode()
    assert "PAY-1 accepted" in body and "Accept and merge" not in body
    ticket = Ticket.objects.get(pk=awaiting.pk)
    assert ticket.status == "accepted" and ticket.decided_by == po


def test_rejecting_without_feedback_is_a_400_naming_the_feedback(cast, po, awaiting) -> None:
    response = portal_client(po).post(url("PAY-1", "reject/"), {"feedback": "   "})
    assert response.status_code == 400
    body = response.content.decode()
    assert "feedback is required" in body and 'id="id_feedback_error"' in body
    assert Ticket.objects.get(pk=awaiting.pk).status == "awaiting_acceptance"


def test_rejecting_with_feedback_sends_it_to_the_next_attempt(cast, po, awaiting) -> None:
    response = portal_client(po).post(url("PAY-1", "reject/"),
                                   {"feedback": "Round half up, not half even."}, follow=True)
    ticket = Ticket.objects.get(pk=awaiting.pk)
    assert ticket.status == "rejected" and ticket.feedback == "Round half up, not half even."
    assert "Round half up, not half even." in response.content.decode()


def test_a_manager_reads_the_ticket_but_gets_403_deciding(cast, po, awaiting) -> None:
    client = portal_client(cast.manager)
    body = client.get(url("PAY-1")).content.decode()
    assert "Awaiting acceptance." in body and "Accept and merge" not in body
    assert client.post(url("PAY-1", "accept/")).status_code == 403
    assert Ticket.objects.get(pk=awaiting.pk).status == "awaiting_acceptance"


def test_accepting_a_ticket_that_moved_on_says_so_with_409(cast, po, awaiting) -> None:
    client = portal_client(po)
    client.post(url("PAY-1", "accept/"))
    response = client.post(url("PAY-1", "accept/"))
    assert response.status_code == 409 and "cannot go from accepted" in response.content.decode()


def test_a_blocked_ticket_shows_its_reason_and_can_be_retried(cast, po, awaiting) -> None:
    ticket = Ticket.objects.select_related("project__organization").get(pk=awaiting.pk)
    ticket_transition(ticket=ticket, to="queued", actor=SYSTEM)
    ticket_transition(ticket=ticket, to="blocked", actor=SYSTEM,
                      fields={"block_reason": "Retry budget spent; escalation is off."})
    # What policies.enforcement.refusal_record writes when a guardrail refuses an edit.
    audit_record(organization=cast.org, actor=SYSTEM, type="guardrail.refused", target=ticket,
                 target_label=ticket.key, project_id=ticket.project_id,
                 data={"rule": "allowed_paths", "point": "edit",
                       "message": "secrets/.env is outside the allowed paths"})
    seal(cast.org.pk)  # the writers' commits seal their events
    client = portal_client(po)
    body = client.get(url("PAY-1")).content.decode()
    assert "Blocked: a person must decide." in body and "Retry budget spent" in body
    assert "Guardrails refused 1 action" in body and "secrets/.env is outside" in body
    response = client.post(url("PAY-1", "retry/"))
    assert response.status_code == 302
    assert Ticket.objects.get(pk=awaiting.pk).status == "queued"


def test_cancelling_records_the_reason(cast, po, awaiting) -> None:
    client = portal_client(po)
    assert client.post(url("PAY-1", "cancel/"), {"reason": "Not needed"}).status_code == 302
    assert Ticket.objects.get(pk=awaiting.pk).status == "cancelled"
    event = AuditEvent.objects.for_org(cast.org).filter(type="ticket.transition").last()
    assert event is not None and event.data["reason"] == "Not needed"


def test_a_running_attempt_shows_a_progress_row_from_its_events(cast, po) -> None:
    requirement, tickets = proposed(cast, po)
    services.requirement_approve(requirement=requirement, actor=po)
    ticket = Ticket.objects.select_related("project__organization").get(pk=tickets[0].pk)
    for to in ("queued", "running"):
        ticket_transition(ticket=ticket, to=to, actor=SYSTEM)
    attempt = Attempt.objects.create(organization=cast.org, ticket=ticket, number=1,
                                     executor="local", endpoint="gpu", model="m")
    progress(ticket=ticket, type="attempt.tokens", attempt=attempt, actor=Actor.model("m"),
             data={"tokens": 40, "characters": 190, "text": "<<<<<<< SEARCH app.py\n"})
    progress(ticket=ticket, type="attempt.tokens", attempt=attempt, actor=Actor.model("m"),
             data={"tokens": 42, "characters": 200, "text": "x = 1 & <b>"})
    progress(ticket=ticket, type="attempt.check", attempt=attempt,
             data={"check": "a", "index": 1, "of": 3, "passed": True, "exit_code": 0,
                   "duration_ms": 5})
    seal(cast.org.pk)  # the writers' commits seal their events
    body = portal_client(cast.manager).get(url("PAY-1")).content.decode()
    assert "data-progress" in body
    assert "<strong data-checks-passed>1</strong>" in body
    assert "<strong data-checks-total>3</strong>" in body
    assert "<strong data-tokens>42</strong>" in body
    # What the model has written so far, escaped.
    assert "&lt;&lt;&lt;&lt;&lt;&lt;&lt; SEARCH app.py\nx = 1 &amp; &lt;b&gt;</pre>" in body
    assert "Cancel this ticket" not in body


def test_a_diff_is_highlighted_for_its_files_language_and_escaped() -> None:
    from tickets.templatetags.tickets_ui import diff_lines

    diff = ("diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n"
            "-def total(): return '<script>'\n+def total(): return 1\n"
            "diff --git a/notes.txt b/notes.txt\n--- a/notes.txt\n+++ b/notes.txt\n"
            "@@ -1 +1 @@\n-def <b>\n+plain words\n")
    lines = diff_lines(diff)
    removed = next(line for line in lines if line.kind == "remove")
    assert removed.html.startswith("-") and 'class="tok-k"' in removed.html  # `def`
    assert "&lt;script&gt;" in removed.html and "<script>" not in removed.html
    text_line = [line for line in lines if line.kind == "remove"][1]
    assert "tok-k" not in text_line.html and "&lt;b&gt;" in text_line.html
    assert [line.kind for line in lines[:4]] == ["file", "file", "file", "hunk"]


def test_gate_two_shows_the_tech_leads_audit_verdict_and_reason(cast, po) -> None:
    requirement, tickets = proposed(cast, po)
    services.requirement_approve(requirement=requirement, actor=po)
    ticket = Ticket.objects.select_related("project__organization").get(pk=tickets[0].pk)
    for to in ("queued", "running"):
        ticket_transition(ticket=ticket, to=to, actor=SYSTEM)
    attempt = Attempt.objects.create(
        organization=ticket.organization, ticket=ticket, number=1, executor="local",
        endpoint="gpu-box", model="qwen2.5-coder", outcome="passed", diff="",
        finished_at=timezone.now())
    ticket_transition(ticket=ticket, to="auditing", actor=SYSTEM)
    ticket_audited(attempt=attempt, passed=True,
                   summary="Rounds half-up as asked; the tests cover 0.005.",
                   findings=[{"severity": "minor", "path": "billing/totals.py",
                              "message": "Name the rounding constant."}],
                   actor=SYSTEM, options=engine_options(escalation=False, audit=True))
    seal(cast.org.pk)  # the writers' commits seal their events
    body = portal_client(po).get(url(ticket.key)).content.decode()
    panel = body[body.index('id="gate"'):body.index("Accept and merge")]
    assert "Tech Lead's audit of attempt 1" in panel
    assert ">Passed</span>" in panel
    assert "Rounds half-up as asked; the tests cover 0.005." in panel
    assert "Name the rounding constant." in panel and "billing/totals.py" in panel


def test_gate_two_says_why_the_work_was_not_audited(cast, po) -> None:
    requirement, tickets = proposed(cast, po)
    services.requirement_approve(requirement=requirement, actor=po)
    ticket = Ticket.objects.select_related("project__organization").get(pk=tickets[0].pk)
    for to in ("queued", "running"):
        ticket_transition(ticket=ticket, to=to, actor=SYSTEM)
    attempt = Attempt.objects.create(
        organization=ticket.organization, ticket=ticket, number=1, executor="local",
        outcome="passed", finished_at=timezone.now())
    ticket_audit_skipped(ticket=ticket, attempt=attempt,
                         reason="no Tech Lead endpoint is configured")
    seal(cast.org.pk)  # the writers' commits seal their events
    body = portal_client(po).get(url(ticket.key)).content.decode()
    panel = body[body.index('id="gate"'):body.index("Accept and merge")]
    assert ">Skipped</span>" in panel and "no Tech Lead endpoint is configured" in panel


def test_the_timeline_gives_times_to_the_second_and_whole_reasons(cast, po, awaiting) -> None:
    reason = "The model kept editing files outside the allowed paths; " * 12
    services.ticket_cancel(ticket=Ticket.objects.get(pk=awaiting.pk), actor=po, reason=reason)
    seal(cast.org.pk)  # the writers' commits seal their events
    body = portal_client(po).get(url("PAY-1")).content.decode()
    timeline = body[body.index('id="timeline"'):body.index('id="timeline-empty"')]
    stamps = re.findall(r'data-format="seconds"[^>]*>([^<]+)</time>', timeline)
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+", s) for s in stamps)
    assert reason.strip() in timeline

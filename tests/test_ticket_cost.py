"""A ticket's cost is one number wherever it is shown: the API, the ticket page, the board
card, the cost report's ticket list and the pull request's body all equal the ledger's sum
of the ticket's calls, its audits included."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import Client

from agents import ledger
from agents import services as agents_services
from agents.delivery.services import pull_request_text
from agents.models import IntegrationBranch, ModelCall
from agents.templatetags.reports_ui import money as report_money
from tests.factories import TicketFactory
from tests.fixtures import token_client
from tickets.services.attempts import attempt_finish, attempt_start
from tickets.templatetags.tickets_ui import money

pytestmark = pytest.mark.django_db


def _endpoints(cast):
    coder = agents_services.endpoint_create(
        organization=cast.org, actor=cast.admin,
        values={"name": "GPU box", "kind": "openai_compatible", "flavor": "lm_studio",
                "base_url": "http://93.184.215.14:1234/v1", "model": "qwen2.5-coder-7b",
                "role": "coder", "price_input": "0.05", "price_output": "0.10"})
    claude = agents_services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-test",
        values={"name": "Claude", "kind": "anthropic", "base_url": "http://93.184.215.14",
                "model": "claude-sonnet-4-5", "role": "tech_lead"})
    return coder, claude


def _call(cast, endpoint, **kwargs):
    return ledger.model_call_record(organization=cast.org, endpoint=endpoint,
                                             outcome="ok", **kwargs)


@pytest.fixture
def worked_ticket(cast):
    """A ticket at Gate 2 after a failed try, a retry and a cloud audit of the retry."""
    ticket = TicketFactory(requirement__project=cast.project, status="awaiting_acceptance")
    coder, claude = _endpoints(cast)
    for number, outcome in ((1, "tests_failed"), (2, "passed")):
        attempt = attempt_start(ticket=ticket, number=number, executor="local",
                                endpoint=coder.name, model=coder.model)
        call = _call(cast, coder, role="code", ticket=ticket, attempt=attempt,
                     input_tokens=40_000 * number, output_tokens=3_000)
        attempt_finish(attempt=attempt, outcome=outcome, input_tokens=call.input_tokens,
                       output_tokens=call.output_tokens, cost=call.cost)
    # The audit names only the attempt it judged, and its prompt came from the cache.
    _call(cast, claude, role="audit", attempt=attempt, input_tokens=0, output_tokens=400,
          cache_read_tokens=12_000)
    return ticket


def _ledger(ticket) -> tuple[Decimal, Decimal]:
    attempts = ticket.attempts.values("pk")
    return (ModelCall.objects.filter(ticket=ticket).aggregate(s=Sum("cost"))["s"],
            ModelCall.objects.filter(attempt__in=attempts).aggregate(s=Sum("cost"))["s"])


def test_the_api_page_board_report_and_pull_request_show_the_ledgers_sum(
        cast, worked_ticket) -> None:
    by_ticket, by_attempt = _ledger(worked_ticket)
    assert by_ticket == by_attempt  # the audit counts, though it named only its attempt
    audit = ModelCall.objects.get(role="audit")
    assert audit.cost > 0 and by_ticket > audit.cost
    expected = by_ticket

    api = token_client(cast.org, cast.admin, ["read"]).get(
        f"/api/v1/orgs/acme/tickets/{worked_ticket.key}/")
    assert api.status_code == 200
    assert Decimal(api.json()["totals"]["cost"]) == expected
    assert api.json()["totals"]["tokens"] == 40_000 + 80_000 + 6_000 + 400 + 12_000

    browser = Client()
    browser.force_login(cast.admin)
    page = browser.get(f"/o/acme/tickets/{worked_ticket.key}/").content.decode()
    total = re.search(r"data-ticket-cost>([^<]+)<", page)
    assert total is not None and total[1] == money(expected)
    assert "Ticket total</th><td class=\"num tabular-nums\">138400</td>" in page

    board = browser.get("/o/acme/projects/PAY/").content.decode()
    card = board[board.index(f'data-ticket="{worked_ticket.key}"'):]
    shown = re.search(r"data-cost[^>]*>.*?</span>([^<]+)</span>", card)
    assert shown is not None and shown[1] == money(expected)

    report = browser.get("/o/acme/reports/tickets/").content.decode()
    row = report[report.index(f">{worked_ticket.key}</a>"):]
    cell = re.search(r'data-col="cost">(.*?)</td>', row)
    assert cell is not None and cell[1] == str(report_money(expected))

    branch = IntegrationBranch.objects.create(
        organization=cast.org, project=cast.project, name="haao/pay", base="0" * 40, head="0" * 40)
    worked_ticket.merged_commit = "1" * 40
    worked_ticket.save(update_fields=["merged_commit"])
    _, body = pull_request_text(branch)
    assert f"| ${expected:.4f} |" in body


def test_an_attempt_with_only_cache_tokens_shows_them_not_zero(cast) -> None:
    ticket = TicketFactory(requirement__project=cast.project, status="awaiting_acceptance")
    attempt = attempt_start(ticket=ticket, number=1, executor="local", endpoint="GPU box")
    attempt_finish(attempt=attempt, outcome="passed", cache_read_tokens=9_000)
    browser = Client()
    browser.force_login(cast.admin)
    page = browser.get(f"/o/acme/tickets/{ticket.key}/").content.decode()
    assert re.search(r'href="#attempt-1">#1</a>.*?<td class="num tabular-nums">9000</td>',
                     page, re.S)


def test_policy_version_zero_is_shown_as_zero(cast) -> None:
    ticket = TicketFactory(requirement__project=cast.project, status="running")
    attempt_start(ticket=ticket, number=1, executor="local", endpoint="GPU box",
                  policy_version=0)
    browser = Client()
    browser.force_login(cast.admin)
    page = browser.get(f"/o/acme/tickets/{ticket.key}/").content.decode()
    assert re.search(r"Policy version</dt><dd[^>]*>0</dd>", page)

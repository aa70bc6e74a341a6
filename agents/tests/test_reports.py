"""Cost reports: every figure equals the ledger, on the page, in the API and in the CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest

from policies.enforcement import month_start
from tests.factories import TicketFactory
from tests.fixtures import token_client
from tests.reports import LOCAL, SONNET, Seed, share, usd

pytestmark = pytest.mark.django_db
@pytest.fixture
def seed(cast) -> Seed:
    return Seed(cast)


def api(cast, user=None, **params):
    client = token_client(cast.org, user or cast.manager, ["read"])
    return client.get("/api/v1/orgs/acme/reports/costs/", params)


def csv_rows(text: str) -> dict[str, dict[str, str]]:
    return {row["key"] if row["group"] != "total" else "total": row
            for row in csv.DictReader(io.StringIO(text))}


def test_the_report_figures_equal_a_hand_computation_on_the_page_in_the_api_and_in_the_csv(
        client, seed) -> None:
    cast = seed.cast
    want = seed.expected()
    # By hand: local 0.000600+0.000600+0.000675+0.000200+0.000450+0.000001, cloud
    # 0.075+0.0546+0.03; three tickets accepted this month.
    assert want["local_cost"] == Decimal("0.002526")
    assert want["cloud_cost"] == Decimal("0.159600")
    assert want["all_cloud_cost"] == Decimal("0.329145")
    per_accepted = share(want["cost"], 3)
    assert per_accepted == Decimal("0.054042")

    body = api(cast).json()
    totals = body["totals"]
    for name, value in want.items():
        assert Decimal(totals[name]) == value, name
    assert totals["accepted_tickets"] == 3
    assert Decimal(totals["cost_per_accepted_ticket"]) == per_accepted
    assert Decimal(totals["all_cloud_cost_per_accepted_ticket"]) == share(
        want["all_cloud_cost"], 3)
    assert totals["calls"] == len(seed.calls)

    client.force_login(cast.manager)
    page = client.get("/o/acme/reports/costs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'title="{per_accepted} USD"' in html
    assert f'title="{want["cost"]} USD"' in html
    assert f'title="{want["all_cloud_cost"]} USD"' in html
    assert f'title="{want["savings"]} USD"' in html

    exported = client.get("/o/acme/reports/costs.csv")
    assert exported["Content-Type"].startswith("text/csv")
    total_line = csv_rows(exported.content.decode())["total"]
    assert Decimal(total_line["cost_usd"]) == want["cost"]
    assert Decimal(total_line["all_cloud_cost_usd"]) == want["all_cloud_cost"]
    assert Decimal(total_line["cost_per_accepted_ticket_usd"]) == per_accepted
    api_csv = token_client(cast.org, cast.manager, ["read"]).get(
        "/api/v1/orgs/acme/reports/costs.csv", HTTP_ACCEPT="text/csv")
    assert api_csv.status_code == 200
    assert api_csv.content == exported.content


def test_rows_by_project_add_up_and_each_divides_by_its_own_accepted_tickets(seed) -> None:
    cast = seed.cast
    rows = {row["key"]: row for row in api(cast, group="project").json()["rows"]}
    pay = seed.of_project(cast.project)
    assert Decimal(rows["PAY"]["cost"]) == pay["cost"]
    assert rows["PAY"]["accepted_tickets"] == 2
    assert Decimal(rows["PAY"]["cost_per_accepted_ticket"]) == share(pay["cost"], 2)
    assert Decimal(rows["OPS"]["cost"]) == Decimal("0.000450")
    assert rows["OPS"]["accepted_tickets"] == 1
    assert Decimal(rows[""]["cost"]) == Decimal("0.000001")  # the health check
    assert rows[""]["cost_per_accepted_ticket"] is None
    assert sum(Decimal(row["cost"]) for row in rows.values()) == seed.expected()["cost"]


@pytest.mark.parametrize("group", ["requirement", "model", "endpoint", "month"])
def test_every_grouping_adds_up_to_the_totals(seed, group) -> None:
    body = api(seed.cast, group=group).json()
    for name in ("cost", "local_cost", "cloud_cost", "all_cloud_cost"):
        assert sum(Decimal(row[name]) for row in body["rows"]) == Decimal(body["totals"][name])
    assert sum(row["calls"] for row in body["rows"]) == body["totals"]["calls"]


def test_a_models_row_is_its_share_of_the_cost_per_accepted_ticket(seed) -> None:
    rows = {row["key"]: row for row in api(seed.cast, group="model").json()["rows"]}
    sonnet = seed.expected(lambda e, r, t: e is seed.claude)
    assert Decimal(rows["claude-sonnet-4-5"]["cost"]) == sonnet["cost"]
    assert rows["claude-sonnet-4-5"]["accepted_tickets"] == 3
    assert Decimal(rows["claude-sonnet-4-5"]["cost_per_accepted_ticket"]) == share(
        sonnet["cost"], 3)
    # The local model's all-cloud cost is its tokens at Sonnet's rates.
    assert Decimal(rows["qwen2.5-coder-7b"]["all_cloud_cost"]) == usd(
        {"input": 26_510, "output": 6_001}, SONNET)


def test_filters_narrow_the_spend_and_the_accepted_tickets(seed) -> None:
    cast = seed.cast
    only_local = api(cast, kind="local").json()["totals"]
    assert Decimal(only_local["cost"]) == seed.expected()["local_cost"]
    assert only_local["accepted_tickets"] == 3  # kind narrows the spend only
    ops = api(cast, project="ops").json()["totals"]
    assert Decimal(ops["cost"]) == Decimal("0.000450") and ops["accepted_tickets"] == 1
    requirement = api(cast, requirement="PAY-R1").json()["totals"]
    assert requirement["accepted_tickets"] == 2
    endpoint = api(cast, endpoint=str(seed.claude.pk)).json()["totals"]
    assert Decimal(endpoint["cost"]) == seed.expected()["cloud_cost"]


def test_a_wider_period_takes_in_last_months_calls_and_tickets(seed) -> None:
    since = (month_start(seed.now) - timedelta(days=5)).date()
    body = api(seed.cast, **{"from": since.isoformat(), "to": seed.now.date().isoformat(),
                             "group": "month"}).json()
    assert body["totals"]["calls"] == len(seed.calls) + 1
    assert body["totals"]["accepted_tickets"] == 4
    months = [row["key"] for row in body["rows"]]
    assert months == sorted(months) and len(months) == 2
    assert body["rows"][0]["accepted_tickets"] == 1
    assert Decimal(body["rows"][0]["cost"]) == usd({"input": 1_000, "output": 100}, LOCAL)


def test_quality_counts_first_passes_retries_escalations_audits_and_rejections(seed) -> None:
    quality = api(seed.cast).json()["quality"]
    assert quality["first_pass"] == {"count": 2, "of": 3, "percent": "66.7"}
    assert quality["retries_per_accepted_ticket"] == "0.67"  # 5 attempts for 3 tickets
    assert quality["escalations_per_accepted_ticket"] == "0.33"
    assert quality["audit_passes"] == {"count": 1, "of": 2, "percent": "50.0"}
    assert quality["gate2_rejections"] == {"count": 1, "of": 4, "percent": "25.0"}


def test_budgets_show_cloud_spend_against_the_policys_caps(seed) -> None:
    budgets = api(seed.cast).json()["budgets"]
    month = budgets[0]
    assert month["rule"] == "monthly_cloud_cap_usd" and month["cap"] is None
    assert Decimal(month["spent"]) == seed.expected()["cloud_cost"]
    requirement = next(b for b in budgets if b["rule"] == "requirement_cloud_cap_usd")
    assert requirement["what"] == "PAY-R1"
    assert Decimal(requirement["spent"]) == seed.expected()["cloud_cost"]
    assert Decimal(requirement["cap"]) == Decimal(25)  # the default cap per requirement
    tickets = [b for b in budgets if b["rule"] == "ticket_cloud_cap_usd"]
    assert [b["what"] for b in tickets] == ["PAY-2", "PAY-1"]


def test_each_figure_links_to_the_tickets_behind_it(client, seed) -> None:
    cast = seed.cast
    rows = {row["key"]: row for row in api(cast, group="project").json()["rows"]}
    client.force_login(cast.manager)
    page = client.get(rows["PAY"]["tickets_url"])
    assert page.status_code == 200
    html = page.content.decode()
    for ticket in (seed.t1, seed.t2, seed.t3):
        assert f'/o/acme/tickets/{ticket.key}/' in html
    assert seed.t4.key not in html
    pay = seed.of_project(cast.project)
    assert f'data-figure="total"><span title="{pay["cost"]} USD"' in html
    assert "Calls of no ticket (decompositions, health checks): 1 call," in html


@pytest.mark.parametrize("path", ["/o/acme/reports/costs/", "/o/acme/reports/costs.csv",
                                  "/o/acme/reports/tickets/"])
def test_admins_and_managers_read_reports_members_and_product_owners_may_not(
        client, seed, path) -> None:
    cast = seed.cast
    for user, status in ((cast.admin, 200), (cast.manager, 200), (cast.member, 403),
                         (cast.product_owner, 403), (cast.outsider, 404)):
        client.force_login(user)
        assert client.get(path).status_code == status, user


def test_the_api_answers_a_member_403_and_another_organizations_token_404(seed) -> None:
    cast = seed.cast
    assert api(cast, cast.member).status_code == 403
    outsider = token_client(cast.other_org, cast.outsider, ["read"])
    assert outsider.get("/api/v1/orgs/acme/reports/costs/").status_code == 404
    assert outsider.get("/api/v1/orgs/acme/reports/costs.csv").status_code == 404


def test_another_organizations_numbers_never_appear(client, seed) -> None:
    cast = seed.cast
    globex = token_client(cast.other_org, cast.outsider, ["read"]).get(
        "/api/v1/orgs/globex/reports/costs/").json()
    assert globex["totals"]["calls"] == 1 and globex["totals"]["accepted_tickets"] == 0
    assert Decimal(globex["totals"]["cost"]) == usd({"input": 1_000_000, "output": 9},
                                                    SONNET)
    acme = api(cast).json()
    assert acme["totals"]["calls"] == len(seed.calls)
    # Globex's project key is not a project of Acme's: the filter says so, nothing leaks.
    answer = api(cast, project="GLX")
    assert answer.status_code == 400
    assert answer.json()["error"]["details"] == {
        "project": ["There is no project 'GLX' in this organization."]}


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-11-30", "to": "2026-11-01"}, "to"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2000-01-01", "to": "2026-11-01"}, "to"),
    ({"project": "NOPE"}, "project"),
    ({"requirement": "PAY-7"}, "requirement"),
    ({"project": "OPS", "requirement": "PAY-R1"}, "requirement"),
    ({"endpoint": "not-a-uuid"}, "endpoint"),
    ({"endpoint": "6f1c2d3e-0000-4000-8000-000000000000"}, "endpoint"),
    ({"kind": "hybrid"}, "kind"),
    ({"group": "colour"}, "group"),
])
def test_a_bad_filter_gets_a_400_naming_the_field_everywhere(client, seed, params,
                                                            field) -> None:
    cast = seed.cast
    answer = api(cast, **params)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_filter" and list(error["details"]) == [field]
    client.force_login(cast.manager)
    page = client.get("/o/acme/reports/costs/", params)
    assert page.status_code == 400
    assert "Fix the filters above to see the report." in page.content.decode()
    exported = client.get("/o/acme/reports/costs.csv", params)
    assert exported.status_code == 400
    assert f"{field}:" in exported.content.decode()


def test_the_report_runs_the_same_queries_however_many_tickets_and_calls_there_are(
        seed, django_assert_max_num_queries) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cast = seed.cast
    client = token_client(cast.org, cast.manager, ["read"])
    with CaptureQueriesContext(connection) as few:
        assert client.get("/api/v1/orgs/acme/reports/costs/").status_code == 200
    for number in range(10, 40):
        ticket = TicketFactory(project=cast.project, requirement=seed.requirement,
                               number=number, status="accepted", decided_at=seed.now)
        seed.record(seed.claude, "audit", ticket, {"input": 100, "output": 10}, at=seed.now)
        seed.record(seed.gpu, "code", ticket, {"input": 100, "output": 10}, at=seed.now)
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = client.get("/api/v1/orgs/acme/reports/costs/").json()
    assert body["totals"]["accepted_tickets"] == 33

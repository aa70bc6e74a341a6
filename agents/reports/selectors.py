"""The figures of the cost report, read from the usage ledger (`ModelCall`) and the tickets.

Definitions (docs/reports.md says the same for managers):

- The *spend* of a period is the sum of `ModelCall.cost` of the calls made in it (UTC days,
  both ends included) that match the filters: every call, also the failed ones, the
  decompositions and the work on tickets that were never accepted.
- *Accepted tickets* are the tickets whose status is accepted and whose Gate 2 decision
  falls in the period. Project and requirement filters narrow both; model, endpoint and
  kind narrow only the spend, so the rows by model or endpoint split the cost per accepted
  ticket into shares that add up to it.
- *Cost per accepted ticket* = spend ÷ accepted tickets, to the micro-dollar.
- The *all-cloud cost* prices each local call's tokens at the reference cloud model (the
  organization's Tech Lead, else the current Sonnet) and keeps each cloud call's cost;
  *savings* = all-cloud cost - spend.

Money stays `Decimal` throughout; token sums are exact integers from the database.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncMonth

from accounts.models import Organization
from agents.models import EndpointKind, EndpointRole, InferenceEndpoint, ModelCall
from agents.pricing import CURRENT_SONNET, MICRO, MILLION, Price, UnknownModelPrice, price_for
from agents.selectors import NO_COST, ticket_costs
from haao.models import AuditEvent
from policies.enforcement import month_start
from policies.selectors import effective_policy, policy_for
from tickets.models import ExecutorKind, Project, Requirement, Ticket, TicketStatus

ZERO = Decimal("0")
MONEY_ZERO = Value(ZERO, output_field=DecimalField(max_digits=14, decimal_places=6))
GROUPS = ("project", "requirement", "model", "endpoint", "month")
KINDS = ("local", "cloud")
# How many requirements and tickets the budget section lists, nearest to their cap first.
BUDGET_ROWS = 10
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")


@dataclass(frozen=True)
class ReportFilter:
    """Which calls and tickets a report covers: whole UTC days `since`..`until`, inclusive."""

    since: date
    until: date
    project: Project | None = None
    requirement: Requirement | None = None
    model: str = ""
    endpoint: InferenceEndpoint | None = None
    kind: str = ""
    group: str = "project"

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the period."""
        return datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=UTC)

    def params(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (for links); `changes` override or add (None drops)."""
        values: dict[str, Any] = {
            "from": self.since.isoformat(), "to": self.until.isoformat(),
            "project": self.project.key if self.project else "",
            "requirement": self.requirement.key if self.requirement else "",
            "model": self.model, "endpoint": str(self.endpoint.pk) if self.endpoint else "",
            "kind": self.kind, "group": self.group,
        }
        values.update(changes)
        return {name: str(value) for name, value in values.items() if value not in ("", None)}


def default_period(today: date | None = None) -> tuple[date, date]:
    """The current calendar month (UTC) up to today."""
    today = today or datetime.now(UTC).date()
    return today.replace(day=1), today


def month_bounds(day: date) -> tuple[date, date]:
    return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])


# --- The reference cloud price ----------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """The cloud model the all-cloud cost is priced at, and why that one."""

    model: str
    price: Price
    source: str


def reference_price(*, organization: Organization, at: datetime) -> Reference:
    """The organization's Tech Lead model's price in force at `at`, else the current Sonnet's."""
    tech_lead = (InferenceEndpoint.objects.for_org(organization)
                 .filter(role=EndpointRole.TECH_LEAD, kind=EndpointKind.ANTHROPIC)
                 .order_by("-enabled", "name").first())
    if tech_lead is not None:
        if tech_lead.price_input is not None and tech_lead.price_output is not None:
            return Reference(tech_lead.model, Price.from_input_output(
                tech_lead.price_input, tech_lead.price_output, source="endpoint"),
                f"the Tech Lead endpoint {tech_lead.name}")
        try:
            return Reference(tech_lead.model, price_for(tech_lead.model, at=at),
                             f"the Tech Lead endpoint {tech_lead.name}")
        except UnknownModelPrice:
            pass
    return Reference(CURRENT_SONNET, price_for(CURRENT_SONNET, at=at),
                     "HAAO's price table (no priced Tech Lead endpoint)")


# --- Rows -------------------------------------------------------------------------------------

@dataclass
class Figures:
    """Spend, tokens and the all-cloud comparison of one set of calls."""

    key: str
    label: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    local_cost: Decimal = ZERO
    cloud_cost: Decimal = ZERO
    all_cloud_cost: Decimal = ZERO
    accepted: int = 0
    params: dict[str, str] = field(default_factory=dict)
    tickets_url: str = ""  # set by the page: where the tickets behind the row are listed

    @property
    def cost(self) -> Decimal:
        return self.local_cost + self.cloud_cost

    @property
    def savings(self) -> Decimal:
        return self.all_cloud_cost - self.cost

    @property
    def savings_percent(self) -> Decimal | None:
        if not self.all_cloud_cost:
            return None
        return (self.savings * 100 / self.all_cloud_cost).quantize(Decimal("0.1"),
                                                                   rounding=ROUND_HALF_UP)

    @property
    def cost_per_accepted(self) -> Decimal | None:
        return per(self.cost, self.accepted)

    @property
    def all_cloud_per_accepted(self) -> Decimal | None:
        return per(self.all_cloud_cost, self.accepted)

    @property
    def cost_ratio(self) -> Decimal | None:
        """Spend as a share of the all-cloud cost (0.35: HAAO cost 35% of it)."""
        if not self.all_cloud_cost:
            return None
        return (self.cost / self.all_cloud_cost).quantize(Decimal("0.001"),
                                                          rounding=ROUND_HALF_UP)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "calls": self.calls,
                **{name: getattr(self, name) for name in TOKEN_FIELDS},
                "local_cost": self.local_cost, "cloud_cost": self.cloud_cost,
                "cost": self.cost, "all_cloud_cost": self.all_cloud_cost,
                "savings": self.savings, "savings_percent": self.savings_percent,
                "accepted_tickets": self.accepted,
                "cost_per_accepted_ticket": self.cost_per_accepted,
                "all_cloud_cost_per_accepted_ticket": self.all_cloud_per_accepted}


def usd(value: Decimal | None) -> str:
    """An amount as exact text to the micro-dollar ("" for none)."""
    return "" if value is None else format(value.quantize(MICRO), "f")


def per(amount: Decimal, count: int) -> Decimal | None:
    """`amount / count` to the micro-dollar, half up; None for no tickets."""
    if not count:
        return None
    return (amount / count).quantize(MICRO, rounding=ROUND_HALF_UP)


def _all_cloud(reference: Price, local_tokens: dict[str, int], cloud_cost: Decimal) -> Decimal:
    local = (reference.input * local_tokens["input_tokens"]
             + reference.output * local_tokens["output_tokens"]
             + reference.cache_write * local_tokens["cache_write_tokens"]
             + reference.cache_read * local_tokens["cache_read_tokens"]) / MILLION
    return cloud_cost + local.quantize(MICRO, rounding=ROUND_HALF_UP)


def _sums() -> dict[str, Any]:
    """Aggregates of a set of calls (named apart from the model's fields)."""
    local, cloud = Q(is_cloud=False), Q(is_cloud=True)
    sums: dict[str, Any] = {"n_calls": Count("pk"),
                            "sum_local_cost": Coalesce(Sum("cost", filter=local), MONEY_ZERO),
                            "sum_cloud_cost": Coalesce(Sum("cost", filter=cloud), MONEY_ZERO)}
    for name in TOKEN_FIELDS:
        sums[f"sum_{name}"] = Coalesce(Sum(name), 0)
        sums[f"sum_local_{name}"] = Coalesce(Sum(name, filter=local), 0)
    return sums


def _figures(key: str, label: str, row: dict[str, Any], reference: Price) -> Figures:
    local_tokens = {name: row[f"sum_local_{name}"] for name in TOKEN_FIELDS}
    return Figures(key=key, label=label, calls=row["n_calls"],
                   **{name: row[f"sum_{name}"] for name in TOKEN_FIELDS},
                   local_cost=row["sum_local_cost"], cloud_cost=row["sum_cloud_cost"],
                   all_cloud_cost=_all_cloud(reference, local_tokens, row["sum_cloud_cost"]))


# --- Querysets --------------------------------------------------------------------------------

def report_calls(*, organization: Organization, filters: ReportFilter) -> QuerySet[ModelCall]:
    """The ledger rows the report sums."""
    calls = ModelCall.objects.for_org(organization).filter(created_at__gte=filters.start,
                                                            created_at__lt=filters.end)
    if filters.project is not None:
        calls = calls.filter(Q(project=filters.project) | Q(ticket__project=filters.project))
    if filters.requirement is not None:
        calls = calls.filter(Q(requirement=filters.requirement)
                             | Q(ticket__requirement=filters.requirement))
    if filters.model:
        calls = calls.filter(model=filters.model)
    if filters.endpoint is not None:
        calls = calls.filter(endpoint=filters.endpoint)
    if filters.kind:
        calls = calls.filter(is_cloud=filters.kind == "cloud")
    return calls


def accepted_tickets(*, organization: Organization, filters: ReportFilter) -> QuerySet[Ticket]:
    """Tickets accepted at Gate 2 in the period (project and requirement filters apply)."""
    tickets = Ticket.objects.for_org(organization).filter(
        status=TicketStatus.ACCEPTED, decided_at__gte=filters.start, decided_at__lt=filters.end)
    if filters.project is not None:
        tickets = tickets.filter(project=filters.project)
    if filters.requirement is not None:
        tickets = tickets.filter(requirement=filters.requirement)
    return tickets


# --- The report -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """A share with what it counts: `part` of `whole`."""

    part: int
    whole: int

    @property
    def percent(self) -> Decimal | None:
        if not self.whole:
            return None
        return (Decimal(self.part) * 100 / self.whole).quantize(Decimal("0.1"),
                                                               rounding=ROUND_HALF_UP)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.part, "of": self.whole, "percent": self.percent}


@dataclass(frozen=True)
class Quality:
    """How the accepted tickets got there, and how the audit and Gate 2 decided."""

    accepted: int
    attempts: int
    cloud_attempts: int
    first_pass: Rate
    escalated: Rate
    audits: Rate
    gate2_rejections: Rate

    @property
    def retries_per_accepted(self) -> Decimal | None:
        if not self.accepted:
            return None
        return (Decimal(self.attempts - self.accepted) / self.accepted).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)

    @property
    def escalations_per_accepted(self) -> Decimal | None:
        if not self.accepted:
            return None
        return (Decimal(self.escalated.part) / self.accepted).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted_tickets": self.accepted, "attempts": self.attempts,
                "cloud_attempts": self.cloud_attempts,
                "first_pass": self.first_pass.as_dict(),
                "retries_per_accepted_ticket": self.retries_per_accepted,
                "escalated": self.escalated.as_dict(),
                "escalations_per_accepted_ticket": self.escalations_per_accepted,
                "audit_passes": self.audits.as_dict(),
                "gate2_rejections": self.gate2_rejections.as_dict()}


@dataclass
class BudgetUse:
    """Cloud spend against one cap."""

    rule: str
    what: str
    cap: Decimal | None
    spent: Decimal
    params: dict[str, str] = field(default_factory=dict)
    path: str = ""
    link: str = ""  # set by the page

    @property
    def percent(self) -> Decimal | None:
        if not self.cap:
            return None
        return (self.spent * 100 / self.cap).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "what": self.what, "cap": self.cap, "spent": self.spent,
                "percent": self.percent}


@dataclass(frozen=True)
class CostReport:
    filters: ReportFilter
    reference: Reference
    totals: Figures
    rows: list[Figures]
    quality: Quality
    budgets: list[BudgetUse]
    months: list[Figures]


def cost_report(*, organization: Organization, filters: ReportFilter) -> CostReport:
    """Every figure of the report for `filters`; see the module's docstring."""
    reference = reference_price(organization=organization,
                                at=min(filters.end, datetime.now(UTC)))
    calls = report_calls(organization=organization, filters=filters)
    accepted = accepted_tickets(organization=organization, filters=filters)
    totals = _figures("total", "All", calls.aggregate(**_sums()), reference.price)
    totals.accepted = accepted.count()
    totals.params = filters.params()
    rows = _rows(organization, filters, calls, accepted, reference.price, totals.accepted)
    months = rows if filters.group == "month" else _rows(
        organization, filters, calls, accepted, reference.price, totals.accepted,
        group="month")
    return CostReport(filters=filters, reference=reference, totals=totals, rows=rows,
                      quality=_quality(organization, filters, accepted),
                      budgets=_budgets(organization, filters), months=months)


# How accepted tickets split by the rows; other groupings share all of them.
ACCEPTED_GROUPS = {"project": F("project_id"), "requirement": F("requirement_id"),
                   "month": TruncMonth("decided_at", tzinfo=UTC)}


def _group_expression(group: str) -> Any:
    if group == "project":
        return Coalesce("project_id", "ticket__project_id")
    if group == "requirement":
        return Coalesce("requirement_id", "ticket__requirement_id")
    if group == "model":
        return F("model")
    if group == "endpoint":
        return F("endpoint_id")
    return TruncMonth("created_at", tzinfo=UTC)


def _rows(organization: Organization, filters: ReportFilter, calls: QuerySet[ModelCall],
          accepted: QuerySet[Ticket], reference: Price, accepted_total: int,
          group: str | None = None) -> list[Figures]:
    group = group or filters.group
    grouped = (calls.order_by().annotate(group_key=_group_expression(group))
               .values("group_key").annotate(**_sums()))
    by_key = {row["group_key"]: row for row in grouped}
    accepted_by: dict[Any, int] = {}
    if group in ACCEPTED_GROUPS:
        accepted_by = {row["group_key"]: row["n"] for row in
                       accepted.order_by().annotate(group_key=ACCEPTED_GROUPS[group])
                       .values("group_key").annotate(n=Count("pk"))}
    keys = set(by_key) | set(accepted_by)
    labels = _labels(organization, group, keys)
    empty = {name: 0 for name in _sums()} | {"sum_local_cost": ZERO, "sum_cloud_cost": ZERO}
    rows = []
    for key in keys:
        text_key, label, params = labels[key]
        figures = _figures(text_key, label, by_key.get(key, empty), reference)
        figures.accepted = accepted_by.get(key, 0) if group in ACCEPTED_GROUPS \
            else accepted_total
        figures.params = filters.params(**params)
        rows.append(figures)
    if group == "month":
        rows.sort(key=lambda row: row.key)
    else:
        rows.sort(key=lambda row: (-row.cost, row.label))
    return rows


def _labels(organization: Organization, group: str,
            keys: Iterable[Any]) -> dict[Any, tuple[str, str, dict[str, Any]]]:
    """For each group key: its text key, its label and the filter that selects its rows."""
    keys = list(keys)
    labels: dict[Any, tuple[str, str, dict[str, Any]]] = {}
    none_label = {"project": "No project (organization-wide calls)",
                  "requirement": "No requirement (e.g. health checks)"}
    if group == "project":
        projects = Project.objects.for_org(organization).in_bulk([k for k in keys if k])
        for key in keys:
            project = projects.get(key)
            labels[key] = ((project.key, f"{project.key} · {project.name}",
                            {"project": project.key, "group": "requirement"})
                           if project else ("", none_label[group], {}))
    elif group == "requirement":
        requirements = (Requirement.objects.for_org(organization).select_related("project")
                        .in_bulk([k for k in keys if k]))
        for key in keys:
            requirement = requirements.get(key)
            labels[key] = ((requirement.key, f"{requirement.key} · {requirement.title}",
                            {"project": requirement.project.key,
                             "requirement": requirement.key})
                           if requirement else ("", none_label[group], {}))
    elif group == "endpoint":
        endpoints = InferenceEndpoint.objects.for_org(organization).in_bulk(
            [k for k in keys if k])
        for key in keys:
            endpoint = endpoints.get(key)
            name = endpoint.name if endpoint else str(key)
            kind = " (cloud)" if endpoint is not None and endpoint.is_cloud else ""
            labels[key] = (str(key), f"{name}{kind}", {"endpoint": str(key)})
    elif group == "model":
        for key in keys:
            labels[key] = (key, key, {"model": key})
    else:
        for key in keys:
            day = key.date() if isinstance(key, datetime) else key
            start, end = month_bounds(day)
            labels[key] = (start.strftime("%Y-%m"), start.strftime("%B %Y"),
                           {"from": start.isoformat(), "to": end.isoformat(),
                            "group": "project"})
    return labels


def _quality(organization: Organization, filters: ReportFilter,
             accepted: QuerySet[Ticket]) -> Quality:
    per_ticket = list(accepted.order_by().annotate(
        n=Count("attempts"),
        cloud=Count("attempts", filter=Q(attempts__executor=ExecutorKind.CLOUD)))
        .values_list("n", "cloud"))
    count = len(per_ticket)
    events = AuditEvent.objects.for_org(organization).filter(
        created_at__gte=filters.start, created_at__lt=filters.end)
    if filters.project is not None:
        events = events.filter(project_id=filters.project.pk)
    if filters.requirement is not None:
        ticket_ids = Ticket.objects.for_org(organization).filter(
            requirement=filters.requirement).values_list("pk", flat=True)
        events = events.filter(target_id__in=[str(pk) for pk in ticket_ids])
    verdicts = events.filter(type="ticket.audited").aggregate(
        passed=Count("pk", filter=Q(data__passed=True)), all=Count("pk"))
    decisions = events.filter(type="ticket.transition",
                              data__from=TicketStatus.AWAITING_ACCEPTANCE).aggregate(
        rejected=Count("pk", filter=Q(data__to=TicketStatus.REJECTED)),
        all=Count("pk", filter=Q(data__to__in=(TicketStatus.REJECTED, TicketStatus.ACCEPTED))))
    return Quality(accepted=count, attempts=sum(n for n, _ in per_ticket),
                   cloud_attempts=sum(cloud for _, cloud in per_ticket),
                   first_pass=Rate(sum(1 for n, _ in per_ticket if n == 1), count),
                   escalated=Rate(sum(1 for _, cloud in per_ticket if cloud), count),
                   audits=Rate(verdicts["passed"], verdicts["all"]),
                   gate2_rejections=Rate(decisions["rejected"], decisions["all"]))


def _budgets(organization: Organization, filters: ReportFilter) -> list[BudgetUse]:
    """Cloud spend against each cap of the policy: the organization's month (now), and the
    requirements and tickets of the report's scope nearest to their caps."""
    cloud = ModelCall.objects.for_org(organization).filter(is_cloud=True)
    month = month_start()
    org_policy = effective_policy(organization=organization)
    spent_month = cloud.filter(created_at__gte=month).aggregate(
        s=Coalesce(Sum("cost"), MONEY_ZERO))["s"]
    start, end = month_bounds(month.date())
    uses = [BudgetUse("monthly_cloud_cap_usd", f"the organization in {month:%B %Y}",
                      org_policy.monthly_cloud_cap_usd, spent_month,
                      params=filters.params(**{"from": start.isoformat(), "to": end.isoformat(),
                                               "kind": "cloud", "model": None,
                                               "endpoint": None}))]
    scoped = report_calls(organization=organization, filters=filters).filter(is_cloud=True)
    policies: dict[Any, Any] = {}

    def policy_of(project: Project) -> Any:
        if project.pk not in policies:
            policies[project.pk] = policy_for(project=project)
        return policies[project.pk]

    requirement_ids = scoped.order_by().annotate(
        r=Coalesce("requirement_id", "ticket__requirement_id")).exclude(r=None).values("r")
    spend = {row["r"]: row["s"] for row in
             cloud.filter(Q(requirement__in=requirement_ids)
                          | Q(ticket__requirement__in=requirement_ids))
             .order_by().annotate(r=Coalesce("requirement_id", "ticket__requirement_id"))
             .values("r").annotate(s=Sum("cost"))}
    requirements = Requirement.objects.for_org(organization).select_related(
        "project").in_bulk(list(spend))
    requirement_uses = []
    for pk, spent in spend.items():
        requirement = requirements[pk]
        cap = policy_of(requirement.project).requirement_cloud_cap_usd
        requirement_uses.append(BudgetUse(
            "requirement_cloud_cap_usd", requirement.key, cap, spent,
            params=filters.params(project=requirement.project.key,
                                  requirement=requirement.key, kind="cloud"),
            path=f"requirements/{requirement.key}/"))
    ticket_ids = scoped.exclude(ticket=None).order_by().values("ticket_id")
    ticket_spend = {row["ticket_id"]: row["s"] for row in
                    cloud.filter(ticket__in=ticket_ids).order_by().values("ticket_id")
                    .annotate(s=Sum("cost"))}
    tickets = Ticket.objects.for_org(organization).select_related("project").in_bulk(
        list(ticket_spend))
    ticket_uses = []
    for pk, spent in ticket_spend.items():
        ticket = tickets[pk]
        ticket_uses.append(BudgetUse(
            "ticket_cloud_cap_usd", ticket.key, policy_of(ticket.project).ticket_cloud_cap_usd,
            spent, path=f"tickets/{ticket.key}/"))

    def nearest(use: BudgetUse) -> tuple[Decimal, Decimal]:
        return (-(use.percent or ZERO), -use.spent)

    return (uses + sorted(requirement_uses, key=nearest)[:BUDGET_ROWS]
            + sorted(ticket_uses, key=nearest)[:BUDGET_ROWS])


# --- The tickets behind a figure --------------------------------------------------------------

@dataclass(frozen=True)
class TicketSpend:
    ticket: Ticket
    calls: int
    cost: Decimal
    accepted_in_period: bool


def report_ticket_spend(*, organization: Organization,
                        filters: ReportFilter) -> tuple[list[TicketSpend], dict[str, Any]]:
    """The tickets whose calls make up a figure, most expensive first, and the calls of the
    figure that belong to no ticket (decompositions, health checks), so the page adds up."""
    calls = report_calls(organization=organization, filters=filters)
    accepted_ids = set(accepted_tickets(organization=organization, filters=filters)
                       .values_list("pk", flat=True))
    spend = ticket_costs(organization=organization, calls=calls)
    ids = set(spend) | (accepted_ids if not (filters.model or filters.endpoint or filters.kind)
                        else set())
    tickets = (Ticket.objects.for_org(organization).select_related("project")
               .in_bulk(list(ids)))
    rows = [TicketSpend(ticket=tickets[pk], calls=spend.get(pk, NO_COST).calls,
                        cost=spend.get(pk, NO_COST).cost,
                        accepted_in_period=pk in accepted_ids)
            for pk in ids if pk in tickets]
    rows.sort(key=lambda row: (-row.cost, row.ticket.project.key, row.ticket.number))
    unassigned = calls.filter(ticket=None).aggregate(
        calls=Count("pk"), cost=Coalesce(Sum("cost"), MONEY_ZERO))
    return rows, unassigned


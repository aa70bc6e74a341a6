"""`/metrics`: the installation's numbers for Prometheus, read from the database at scrape time.

Several web and worker processes run HAAO, so nothing is counted in memory: every scrape
runs a fixed handful of grouped queries (`QUERIES`), whatever the amount of data. They scan
each table across all organizations (the ledger and the audit log grow without bound);
acceptable for now, and the first thing to move to rollups if scrapes get slow.

Label values are bounded: organization slugs, project keys, endpoint names and the models'
choices; never free text and never people.
"""

from __future__ import annotations

import hmac
import math
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agents.models import HealthStatus, InferenceEndpoint, ModelCall
from haao.models import AuditEvent
from policies.enforcement import month_start
from policies.rules import BY_NAME as POLICY_RULES
from tickets.models import Attempt, AttemptOutcome, Ticket, TicketStatus

# Upper bounds of the latency histogram, seconds; `+Inf` is added by the exposition.
LATENCY_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_KINDS: tuple[str, ...] = ("input", "output", "cache_write", "cache_read")
# How many database queries one scrape runs (the tests hold the view to it).
QUERIES = 6
# A refusal whose rule is not a policy rule any more (renamed) is counted under this label.
OTHER_RULE = "other"


def _bucket_key(bound: float) -> str:
    return f"le_{int(bound * 1000)}ms"


def _money(value: Decimal | None) -> float:
    """A sum of ledger costs, exact until here; floats only in the exposition."""
    return float(value or Decimal("0"))


class HaaoCollector(Collector):
    """Every HAAO metric family, each from one grouped query over the database."""

    def collect(self) -> Iterator[Metric]:
        yield from self._tickets()
        yield from self._attempts()
        yield from self._model_calls()
        yield from self._endpoints()
        yield from self._guardrail_refusals()
        yield from self._audit_sealing()

    def _tickets(self) -> Iterator[Metric]:
        rows = (Ticket.objects.order_by()
                .values_list("organization__slug", "project__key", "status")
                .annotate(n=Count("id")))
        counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for org, project, status, n in rows:
            counts[(org, project)][status] = n
        family = GaugeMetricFamily("haao_tickets", "Tickets by organization, project and state.",
                                   labels=["organization", "project", "state"])
        for (org, project), by_state in sorted(counts.items()):
            # Every state of a project that has tickets, zeros included: a state emptied
            # reads 0 rather than a series that vanishes.
            for state in TicketStatus.values:
                family.add_metric([org, project, state], by_state.get(state, 0))
        yield family

    def _attempts(self) -> Iterator[Metric]:
        rows = (Attempt.objects.order_by()
                .values_list("organization__slug", "outcome", "executor", "stage")
                .annotate(n=Count("id")))
        finished: dict[tuple[str, str, str], int] = defaultdict(int)
        running: dict[tuple[str, str], int] = defaultdict(int)
        for org, outcome, executor, stage, n in rows:
            if outcome == AttemptOutcome.RUNNING:
                running[(org, stage)] += n
            else:
                finished[(org, outcome, executor)] += n
        total = CounterMetricFamily("haao_attempts", "Finished attempts by outcome and executor.",
                                    labels=["organization", "outcome", "executor"])
        for labels, n in sorted(finished.items()):
            total.add_metric(list(labels), n)
        yield total
        now_running = GaugeMetricFamily("haao_attempts_running", "Running attempts by stage.",
                                        labels=["organization", "stage"])
        for (org, stage), n in sorted(running.items()):
            now_running.add_metric([org, stage], n)
        yield now_running

    def _model_calls(self) -> Iterator[Metric]:
        buckets = {_bucket_key(bound): Count("id", filter=Q(latency_ms__lte=int(bound * 1000)))
                   for bound in LATENCY_BUCKETS}
        rows = (ModelCall.objects.order_by()
                .values("organization__slug", "endpoint__name", "role", "outcome", "is_cloud")
                .annotate(n=Count("id"), latency_ms_sum=Sum("latency_ms"),
                          cost_sum=Sum("cost"),
                          cost_month=Sum("cost", filter=Q(created_at__gte=month_start())),
                          **{f"{kind}_sum": Sum(f"{kind}_tokens") for kind in TOKEN_KINDS},
                          **buckets))
        calls = CounterMetricFamily(
            "haao_model_calls", "Model calls in the ledger.",
            labels=["organization", "endpoint", "role", "outcome", "cloud"])
        latency: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        tokens: dict[tuple[str, str, str], int] = defaultdict(int)
        spend: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        spend_month: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for row in rows:
            org, endpoint = row["organization__slug"], row["endpoint__name"]
            cloud = "true" if row["is_cloud"] else "false"
            calls.add_metric([org, endpoint, row["role"], row["outcome"], cloud], row["n"])
            per_endpoint = latency[(org, endpoint)]
            for key in (*buckets, "n", "latency_ms_sum"):
                per_endpoint[key] += row[key] or 0
            for kind in TOKEN_KINDS:
                tokens[(org, endpoint, kind)] += row[f"{kind}_sum"] or 0
            spend[(org, cloud)] += row["cost_sum"] or Decimal("0")
            spend_month[(org, cloud)] += row["cost_month"] or Decimal("0")
        yield calls

        histogram = HistogramMetricFamily(
            "haao_model_call_latency_seconds", "Latency of model calls.",
            labels=["organization", "endpoint"])
        for (org, endpoint), sums in sorted(latency.items()):
            histogram.add_metric(
                [org, endpoint],
                [(floatToGoString(bound), sums[_bucket_key(bound)]) for bound in LATENCY_BUCKETS]
                + [("+Inf", sums["n"])],
                sum_value=sums["latency_ms_sum"] / 1000)
        yield histogram

        token_family = CounterMetricFamily("haao_model_tokens", "Tokens of model calls by kind.",
                                           labels=["organization", "endpoint", "kind"])
        for labels, n in sorted(tokens.items()):
            token_family.add_metric(list(labels), n)
        yield token_family

        spend_family = CounterMetricFamily("haao_spend_usd", "Spend on model calls, USD.",
                                           labels=["organization", "cloud"])
        for (org, cloud), amount in sorted(spend.items()):
            spend_family.add_metric([org, cloud], _money(amount))
        yield spend_family
        month_family = GaugeMetricFamily(
            "haao_spend_usd_month", "Spend on model calls this calendar month (UTC), USD.",
            labels=["organization", "cloud"])
        for (org, cloud), amount in sorted(spend_month.items()):
            month_family.add_metric([org, cloud], _money(amount))
        yield month_family

    def _endpoints(self) -> Iterator[Metric]:
        held = Count("leases", filter=Q(leases__expires_at__gt=timezone.now()))
        rows = (InferenceEndpoint.objects.order_by()
                .values_list("organization__slug", "name", "health_status")
                .annotate(slots=held))
        healthy = GaugeMetricFamily(
            "haao_endpoint_healthy", "1 if the last health check passed, 0 if it failed, "
            "NaN if not checked yet.", labels=["organization", "endpoint"])
        slots = GaugeMetricFamily("haao_endpoint_slots_in_use",
                                  "Concurrency slots held by calls (unexpired leases).",
                                  labels=["organization", "endpoint"])
        for org, name, status, in_use in sorted(rows):
            value = {HealthStatus.OK: 1.0, HealthStatus.FAILING: 0.0}.get(status, math.nan)
            healthy.add_metric([org, name], value)
            slots.add_metric([org, name], in_use)
        yield healthy
        yield slots

    def _guardrail_refusals(self) -> Iterator[Metric]:
        rows = (AuditEvent.objects.order_by().filter(type="guardrail.refused")
                .annotate(rule=KeyTextTransform("rule", "data"))
                .values_list("organization__slug", "rule")
                .annotate(n=Count("id")))
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for org, rule, n in rows:
            # The rule comes from the policy code, but the label set must stay bounded even
            # if an old event names a rule that no longer exists.
            counts[(org, rule if rule in POLICY_RULES else OTHER_RULE)] += n
        family = CounterMetricFamily("haao_guardrail_refusals", "Guardrail refusals by rule.",
                                     labels=["organization", "rule"])
        for labels, n in sorted(counts.items()):
            family.add_metric(list(labels), n)
        yield family

    def _audit_sealing(self) -> Iterator[Metric]:
        """The audit rows waiting for their organization's sealer (haao.audit.seal): normally
        none, or a few for milliseconds; a growing age means no sealer runs (alert on it)."""
        rows = (AuditEvent.objects.order_by().filter(seq__isnull=True)
                .values_list("organization__slug").annotate(n=Count("id"),
                                                            oldest=Min("created_at")))
        now = timezone.now()
        pending = GaugeMetricFamily("haao_audit_unsealed_rows",
                                    "Audit rows written but not sealed into the chain yet.",
                                    labels=["organization"])
        age = GaugeMetricFamily("haao_audit_unsealed_oldest_seconds",
                                "Age of the oldest audit row not sealed yet (0: none).",
                                labels=["organization"])
        for org, n, oldest in sorted(rows):
            pending.add_metric([org], n)
            age.add_metric([org], max(0.0, (now - oldest).total_seconds()))
        yield pending
        yield age


# Its own registry: the default one would add this one process's Python metrics, which say
# nothing about an installation of many processes.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(HaaoCollector())


def _authorized(request: HttpRequest, expected: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition; 404 unless HAAO_METRICS_TOKEN is set, 401 without it."""
    expected = settings.HAAO_METRICS_TOKEN
    if not expected:
        raise Http404
    if not _authorized(request, expected):
        response = HttpResponse("A valid bearer token is required.\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


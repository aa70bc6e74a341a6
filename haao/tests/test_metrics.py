"""/metrics: Prometheus numbers of the whole installation, behind a bearer token."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.models import EndpointLease, InferenceEndpoint, ModelCall
from haao.audit import SYSTEM, audit_record, seal
from haao.metrics import QUERIES
from haao.models import AuditEvent
from tests.factories import ProjectFactory, TicketFactory
from tests.fixtures import tampering
from tickets.models import Attempt

TOKEN = "scrape-token-0123456789abcdef"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def token(settings) -> str:
    settings.HAAO_METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client) -> Samples:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def endpoint(org, name: str, *, cloud: bool, health: str) -> InferenceEndpoint:
    return InferenceEndpoint.objects.create(
        organization=org, name=name, kind="anthropic" if cloud else "openai_compatible",
        base_url="http://127.0.0.1:9/v1", model="m", role="coder", self_hosted=not cloud,
        health_status=health, max_concurrency=2)


def call(source: InferenceEndpoint, *, role: str = "code", outcome: str = "ok",
         latency_ms: int = 100, cost: str = "0", **fields: object) -> ModelCall:
    return ModelCall.objects.create(
        organization=source.organization, endpoint=source, endpoint_name=source.name,
        model="m", role=role, outcome=outcome, is_cloud=source.is_cloud, latency_ms=latency_ms,
        cost=Decimal(cost), **fields)


def attempt(ticket, number: int, *, outcome: str, executor: str = "local",
            stage: str = "done") -> Attempt:
    return Attempt.objects.create(organization=ticket.organization, ticket=ticket, number=number,
                                  executor=executor, outcome=outcome, stage=stage)


@pytest.fixture
def seeded(cast):
    """Tickets, attempts, ledger rows, leases and a refusal in acme; a little in globex."""
    queued = [TicketFactory(project=cast.project, requirement__project=cast.project,
                            status="queued") for _ in range(2)]
    TicketFactory(project=cast.project, requirement__project=cast.project, status="accepted")
    TicketFactory(project=cast.other_project, requirement__project=cast.other_project,
                  status="running")
    attempt(queued[0], 1, outcome="passed")
    attempt(queued[0], 2, outcome="tests_failed")
    attempt(queued[1], 1, outcome="tests_failed")
    attempt(queued[1], 2, outcome="running", executor="cloud", stage="coding")

    gpu = endpoint(cast.org, "gpu-box", cloud=False, health="ok")
    claude = endpoint(cast.org, "claude", cloud=True, health="failing")
    globex_gpu = endpoint(cast.other_org, "gpu-box", cloud=False, health="unknown")
    now = timezone.now()
    EndpointLease.objects.create(organization=cast.org, endpoint=gpu, holder="a",
                                 expires_at=now + timedelta(minutes=1))
    EndpointLease.objects.create(organization=cast.org, endpoint=gpu, holder="b",
                                 expires_at=now - timedelta(minutes=1))

    call(gpu, latency_ms=300, cost="0.000100", input_tokens=100, output_tokens=20)
    call(gpu, outcome="timeout", latency_ms=45_000, cost="0.000200", input_tokens=50)
    call(claude, role="audit", latency_ms=2_500, cost="0.012000", input_tokens=1000,
         output_tokens=200, cache_write_tokens=300, cache_read_tokens=700)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    call(claude, role="audit", latency_ms=1_000, cost="1.000000",
         created_at=month_start - timedelta(days=1))
    call(globex_gpu, latency_ms=50, cost="0.500000")

    audit_record(organization=cast.org, actor=SYSTEM, type="guardrail.refused",
                 target=queued[0], data={"rule": "denied_paths", "value": ".env"})
    audit_record(organization=cast.org, actor=SYSTEM, type="guardrail.refused",
                 target=queued[1], data={"rule": "no longer a rule", "value": "x"})
    audit_record(organization=cast.org, actor=SYSTEM, type="ticket.approved", target=queued[1],
                 data={"rule": "denied_paths"})
    return cast


def test_metrics_do_not_exist_without_a_configured_token(client, db, settings) -> None:
    settings.HAAO_METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}",
                                    f"Bearer {TOKEN}x", "Bearer"])
def test_a_missing_or_wrong_token_gets_401_and_no_numbers(client, seeded, token, header,
                                                          caplog) -> None:
    caplog.set_level(logging.DEBUG)
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"haao_" not in response.content
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text


def test_tickets_are_counted_by_project_and_state(client, seeded, token) -> None:
    samples = scrape(client)
    assert value(samples, "haao_tickets", organization="acme", project="PAY", state="queued") == 2
    assert value(samples, "haao_tickets", organization="acme", project="PAY",
                 state="accepted") == 1
    assert value(samples, "haao_tickets", organization="acme", project="PAY",
                 state="running") == 0
    assert value(samples, "haao_tickets", organization="globex", project="GLX",
                 state="running") == 1


def test_finished_attempts_are_counted_by_outcome_and_running_ones_by_stage(
        client, seeded, token) -> None:
    samples = scrape(client)
    assert value(samples, "haao_attempts_total", organization="acme", outcome="passed",
                 executor="local") == 1
    assert value(samples, "haao_attempts_total", organization="acme", outcome="tests_failed",
                 executor="local") == 2
    assert not any(name == "haao_attempts_total" and ("outcome", "running") in labels
                   for name, labels in samples)
    assert value(samples, "haao_attempts_running", organization="acme", stage="coding") == 1


def test_model_calls_tokens_and_spend_match_the_ledger(client, seeded, token) -> None:
    samples = scrape(client)
    assert value(samples, "haao_model_calls_total", organization="acme", endpoint="gpu-box",
                 role="code", outcome="ok", cloud="false") == 1
    assert value(samples, "haao_model_calls_total", organization="acme", endpoint="gpu-box",
                 role="code", outcome="timeout", cloud="false") == 1
    assert value(samples, "haao_model_calls_total", organization="acme", endpoint="claude",
                 role="audit", outcome="ok", cloud="true") == 2
    assert value(samples, "haao_model_tokens_total", organization="acme", endpoint="gpu-box",
                 kind="input") == 150
    assert value(samples, "haao_model_tokens_total", organization="acme", endpoint="claude",
                 kind="cache_read") == 700
    ledger = sum((c.cost for c in ModelCall.objects.filter(organization=seeded.org,
                                                           is_cloud=False)), Decimal("0"))
    assert value(samples, "haao_spend_usd_total", organization="acme",
                 cloud="false") == pytest.approx(float(ledger)) == pytest.approx(0.0003)
    assert value(samples, "haao_spend_usd_total", organization="acme",
                 cloud="true") == pytest.approx(1.012)
    # Last month's 1 USD call counts in the total but not in this month's spend.
    assert value(samples, "haao_spend_usd_month", organization="acme",
                 cloud="true") == pytest.approx(0.012)


def test_call_latency_is_a_histogram_per_endpoint(client, seeded, token) -> None:
    samples = scrape(client)

    def bucket(le: str) -> float:
        return value(samples, "haao_model_call_latency_seconds_bucket", organization="acme",
                     endpoint="gpu-box", le=le)

    assert (bucket("0.1"), bucket("0.5"), bucket("30.0"), bucket("60.0"), bucket("+Inf")) == (
        0, 1, 1, 2, 2)
    assert value(samples, "haao_model_call_latency_seconds_count", organization="acme",
                 endpoint="gpu-box") == 2
    assert value(samples, "haao_model_call_latency_seconds_sum", organization="acme",
                 endpoint="gpu-box") == pytest.approx(45.3)


def test_endpoint_health_and_held_slots_are_reported(client, seeded, token) -> None:
    samples = scrape(client)
    assert value(samples, "haao_endpoint_healthy", organization="acme", endpoint="gpu-box") == 1
    assert value(samples, "haao_endpoint_healthy", organization="acme", endpoint="claude") == 0
    assert math.isnan(value(samples, "haao_endpoint_healthy", organization="globex",
                            endpoint="gpu-box"))
    # One lease is held; the expired one no longer counts.
    assert value(samples, "haao_endpoint_slots_in_use", organization="acme",
                 endpoint="gpu-box") == 1
    assert value(samples, "haao_endpoint_slots_in_use", organization="acme",
                 endpoint="claude") == 0


def test_guardrail_refusals_are_counted_by_rule(client, seeded, token) -> None:
    samples = scrape(client)
    assert value(samples, "haao_guardrail_refusals_total", organization="acme",
                 rule="denied_paths") == 1
    # A rule name that is not a policy rule is not copied into a label.
    assert value(samples, "haao_guardrail_refusals_total", organization="acme",
                 rule="other") == 1
    assert not any(("rule", "no longer a rule") in labels for _, labels in samples)


def test_two_organizations_are_labelled_apart(client, seeded, token) -> None:
    samples = scrape(client)
    assert value(samples, "haao_spend_usd_total", organization="globex",
                 cloud="false") == pytest.approx(0.5)
    assert value(samples, "haao_model_calls_total", organization="globex", endpoint="gpu-box",
                 role="code", outcome="ok", cloud="false") == 1
    assert value(samples, "haao_model_tokens_total", organization="acme", endpoint="gpu-box",
                 kind="input") == 150
    assert ("haao_guardrail_refusals_total",
            frozenset({("organization", "globex"), ("rule", "denied_paths")})) not in samples


def test_no_email_or_free_text_appears_in_the_metrics(client, seeded, token) -> None:
    body = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert "@" not in body
    assert ".env" not in body and "no longer a rule" not in body


def test_a_scrape_runs_the_same_few_queries_however_much_data_there_is(
        client, seeded, token, django_assert_num_queries) -> None:
    with django_assert_num_queries(QUERIES):
        scrape(client)
    more = ProjectFactory(organization=seeded.org, key="MORE")
    gpu = InferenceEndpoint.objects.get(organization=seeded.org, name="gpu-box")
    for number in range(1, 6):
        ticket = TicketFactory(project=more, requirement__project=more, status="running")
        attempt(ticket, number, outcome="error")
        call(gpu, role="solve", outcome="server_error", latency_ms=number * 10_000)
        audit_record(organization=seeded.org, actor=SYSTEM, type="guardrail.refused",
                     target=ticket, data={"rule": "allowed_programs"})
    with django_assert_num_queries(QUERIES):
        samples = scrape(client)
    assert value(samples, "haao_tickets", organization="acme", project="MORE",
                 state="running") == 5


def test_metrics_only_answer_get(client, db, token) -> None:
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405


def test_audit_rows_waiting_for_the_sealer_are_counted_with_the_oldest_age(
        client, cast, token) -> None:
    seal(cast.org.pk)
    samples = scrape(client)
    assert not any(name == "haao_audit_unsealed_rows" for name, _ in samples)
    for _ in range(3):
        audit_record(organization=cast.org, actor=SYSTEM, type="test.pending")
    with tampering():  # written 90 s ago by a writer that died before sealing
        AuditEvent.objects.filter(type="test.pending").update(
            created_at=timezone.now() - timedelta(seconds=90))
    samples = scrape(client)
    assert value(samples, "haao_audit_unsealed_rows", organization="acme") == 3
    assert value(samples, "haao_audit_unsealed_oldest_seconds", organization="acme") >= 90
    seal(cast.org.pk)
    assert not any(name == "haao_audit_unsealed_rows" for name, _ in scrape(client))

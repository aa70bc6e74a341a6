"""The engine's decisions and primitives, in one process: dispatch rules, what an outcome does
to a ticket, endpoint slots, claims and fences, recovery. (tests/test_loop*.py run the same
code on real Celery workers.)"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import services as agent_services
from agents import tasks
from agents.engine import enqueue, recovery, routing, steps, workers
from agents.models import EndpointLease, InferenceEndpoint
from haao.audit import SYSTEM
from haao.errors import Conflict
from haao.models import AuditEvent, ProgressEvent
from policies.services import policy_update
from tests.factories import TicketFactory, engine_options
from tests.fixtures import coder_endpoint, loopback_allowed
from tickets.models import Attempt, AttemptStage, Ticket
from tickets.services.attempts import attempt_claim, attempt_finish, attempt_start
from tickets.services.engine import Options, ticket_attempt_finished, ticket_audited

pytestmark = [pytest.mark.django_db]


def coder(cast: Any, name: str = "Box A", **values: Any) -> InferenceEndpoint:
    return coder_endpoint(cast.org, cast.admin, name=name,
                          **{"flavor": "vllm", "model": "coder", **values})


def ticket(cast: Any, status: str = "queued", **values: Any) -> Ticket:
    made = TicketFactory(requirement__project=cast.project, status=status, **values)
    return Ticket.objects.select_related("project__organization").get(pk=made.pk)


def running_attempt(cast: Any, *, stage: str = AttemptStage.CODING,
                    executor: str = "local") -> Attempt:
    work = ticket(cast, "running")
    return attempt_start(ticket=work, number=1, executor=executor, model="coder", stage=stage)


# --- Dispatch -----------------------------------------------------------------------------------

def test_dispatch_keeps_to_the_wip_limit_in_ticket_order(cast: Any) -> None:
    coder(cast, max_concurrency=8)
    policy_update(organization=cast.org, project=cast.project, actor=SYSTEM,
                  changes={"wip_limit": 2})
    first, second, third = (ticket(cast, order=n) for n in (1, 2, 3))
    started = steps.dispatch_project(project_id=cast.project.pk)
    assert [a.ticket_id for a in started] == [first.pk, second.pk]
    assert Ticket.objects.get(pk=third.pk).status == "queued"
    assert Ticket.objects.get(pk=first.pk).status == "running"
    assert [e.data["endpoint"] for e in AuditEvent.objects.filter(type="ticket.dispatched")] \
        == ["Box A", "Box A"]


def dispatch_queries(cast: Any, count: int) -> int:
    """The queries of one dispatch run that starts `count` approved tickets."""
    for n in range(count):
        ticket(cast, "approved", order=n)
    with CaptureQueriesContext(connection) as queries:
        started = steps.dispatch_project(project_id=cast.project.pk)
    assert len(started) == count
    return len(queries)


def test_one_dispatch_starts_a_batch_with_the_same_few_statements_for_1_or_40(
        cast: Any) -> None:
    coder(cast, max_concurrency=64)
    policy_update(organization=cast.org, project=cast.project, actor=SYSTEM,
                  changes={"wip_limit": 100})
    one = dispatch_queries(cast, 1)
    Ticket.objects.all().delete()
    forty = dispatch_queries(cast, 40)
    # Queued, then running, each ticket with its attempt and both events: requeue and start
    # are one transaction each, with multi-row inserts; pages of the queue are read at once.
    assert forty <= one + 2, (one, forty)
    assert Attempt.objects.filter(stage=AttemptStage.PENDING).count() == 40
    assert AuditEvent.objects.filter(type="ticket.dispatched").count() == 41
    moves = list(AuditEvent.objects.filter(type="ticket.transition")
                 .values_list("data__from", "data__to"))
    assert moves.count(("approved", "queued")) == 41 and moves.count(("queued", "running")) == 41


@pytest.mark.django_db(transaction=True)
def test_a_ticket_someone_else_is_changing_waits_for_the_next_dispatch(cast: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are exercised against PostgreSQL")
    coder(cast, max_concurrency=8)
    busy, free = ticket(cast, order=1), ticket(cast, order=2)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Ticket.objects.select_for_update().get(pk=busy.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = steps.dispatch_project(project_id=cast.project.pk)
        assert [a.ticket_id for a in started] == [free.pk]  # not waiting for the lock
    finally:
        release.set()
        holder.join()
    assert [a.ticket_id for a in steps.dispatch_project(project_id=cast.project.pk)] \
        == [busy.pk]


def test_a_ticket_waits_for_its_dependency_to_be_accepted_and_merged(cast: Any) -> None:
    coder(cast)
    base = ticket(cast, "awaiting_acceptance", order=1)
    dependent = ticket(cast, order=2)
    dependent.dependencies.set([base])
    assert steps.dispatch_project(project_id=cast.project.pk) == []
    Ticket.objects.filter(pk=base.pk).update(status="accepted")
    assert steps.dispatch_project(project_id=cast.project.pk) == []  # accepted, not merged
    Ticket.objects.filter(pk=base.pk).update(merged_commit="a" * 40)
    [attempt] = steps.dispatch_project(project_id=cast.project.pk)
    assert attempt.ticket_id == dependent.pk


def test_a_cancelled_dependency_blocks_the_ticket_with_the_reason(cast: Any) -> None:
    coder(cast)
    base = ticket(cast, "cancelled")
    dependent = ticket(cast)
    dependent.dependencies.set([base])
    steps.dispatch_project(project_id=cast.project.pk)
    dependent.refresh_from_db()
    assert dependent.status == "blocked"
    assert f"{base.key} was cancelled" in dependent.block_reason


def test_without_a_healthy_coder_work_waits_in_the_queue(cast: Any) -> None:
    coder(cast).__class__.objects.update(health_status="failing")
    work = ticket(cast)
    assert steps.dispatch_project(project_id=cast.project.pk) == []
    assert Ticket.objects.get(pk=work.pk).status == "queued"
    assert not Attempt.objects.exists()


def test_dispatch_blocks_a_ticket_that_may_only_change_protected_files(cast: Any) -> None:
    from haao.models import AuditEvent
    from tests.factories import spec_example

    coder(cast)
    protected = ticket(cast, spec=spec_example(allowed_paths=[".github/workflows/ci.yml"]))
    fine = ticket(cast, order=2)
    started = steps.dispatch_project(project_id=cast.project.pk)
    assert [a.ticket_id for a in started] == [fine.pk]
    protected.refresh_from_db()
    assert protected.status == "blocked" and "denied_paths" in protected.block_reason
    event = AuditEvent.objects.get(type="guardrail.refused", target_id=str(protected.pk))
    assert (event.data["value"], event.data["point"]) == (".github/workflows/**", "dispatch")


def test_data_residency_dispatches_only_to_self_hosted_coders(cast: Any) -> None:
    coder(cast, "A rented GPU", self_hosted=False)  # first by name: chosen without the rule
    own = coder(cast, "Own box")
    policy_update(organization=cast.org, actor=SYSTEM, changes={"data_residency": True})
    work = ticket(cast)
    [attempt] = steps.dispatch_project(project_id=cast.project.pk)
    assert attempt.ticket_id == work.pk and attempt.inference_endpoint_id == own.pk


def test_work_goes_to_the_coder_with_the_most_room(cast: Any) -> None:
    small = coder(cast, "Small box", max_concurrency=1)
    big = coder(cast, "Big box", max_concurrency=4)
    policy_update(organization=cast.org, project=cast.project, actor=SYSTEM,
                  changes={"wip_limit": 5})
    for n in range(5):
        ticket(cast, order=n)
    started = steps.dispatch_project(project_id=cast.project.pk)
    placed = [a.inference_endpoint_id for a in started]
    # Load per slot: the big box takes four before the small one's single slot is worse.
    assert placed.count(big.pk) == 4 and placed.count(small.pk) == 1


def test_an_organization_with_a_dedicated_coder_uses_only_it_and_its_queue(cast: Any) -> None:
    coder(cast, "Shared box", max_concurrency=8)
    own = coder(cast, "Own GPU", dedicated_queue="acme-gpu")
    ticket(cast)
    [attempt] = steps.dispatch_project(project_id=cast.project.pk)
    assert attempt.inference_endpoint_id == own.pk
    assert attempt.queue == "acme-gpu"
    assert routing.checks_queue(attempt) == "acme-gpu"
    assert routing.queue_for(organization=cast.org, kind=routing.CLOUD) == "acme-gpu"


# --- What an outcome does to a ticket ------------------------------------------------------------

OPTIONS = engine_options(escalation=True, audit=True)


def finished(cast: Any, outcome: str, *, retries_left: int = 2, executor: str = "local",
             **ticket_values: Any) -> Attempt:
    work = ticket(cast, "running", retries_left=retries_left, **ticket_values)
    attempt = attempt_start(ticket=work, number=1, executor=executor)
    return attempt_finish(attempt=attempt, outcome=outcome, error="unit tests: exit 1")


@pytest.mark.parametrize("options,state", [
    (engine_options(escalation=True, audit=True), "auditing"),
    (engine_options(escalation=True, audit=False), "awaiting_acceptance"),
])
def test_passed_work_is_audited_when_it_can_be(cast: Any, options: Options, state: str) -> None:
    attempt = finished(cast, "passed")
    assert ticket_attempt_finished(attempt=attempt, options=options).status == state


def test_failed_work_is_retried_while_the_budget_lasts(cast: Any) -> None:
    attempt = finished(cast, "tests_failed", retries_left=2)
    after = ticket_attempt_finished(attempt=attempt, options=OPTIONS)
    assert (after.status, after.retries_left) == ("retrying", 1)


def test_a_spent_budget_escalates_to_the_tech_lead(cast: Any) -> None:
    attempt = finished(cast, "tests_failed", retries_left=0)
    assert ticket_attempt_finished(attempt=attempt, options=OPTIONS).status == "escalated"
    assert AuditEvent.objects.filter(type="ticket.escalated").exists()


def test_a_spent_budget_blocks_when_policy_forbids_escalation(cast: Any) -> None:
    attempt = finished(cast, "tests_failed", retries_left=0)
    forbidden = engine_options(escalation=False, audit=True, no_escalation_why=(
        "escalation to the Tech Lead is not allowed by policy"))
    after = ticket_attempt_finished(attempt=attempt, options=forbidden)
    assert after.status == "blocked"
    assert "not allowed by policy" in after.block_reason
    assert "attempt 1 tests failed" in after.block_reason


def test_a_machine_failure_blocks_for_an_admin_without_a_retry_or_escalation(
        cast: Any) -> None:
    work = ticket(cast, "running", retries_left=2)
    attempt = attempt_finish(
        attempt=attempt_start(ticket=work, number=1, executor="local"),
        outcome="infrastructure", error="`go` is not found inside the sandbox: …")
    after = ticket_attempt_finished(attempt=attempt, options=OPTIONS)
    assert after.status == "blocked"
    assert after.block_reason == "Needs an admin: `go` is not found inside the sandbox: …"
    assert (after.retries_left, after.cloud_attempts) == (2, 0)
    [event] = AuditEvent.objects.filter(type="ticket.needs_admin")
    assert event.data["cause"].startswith("`go` is not found") and event.data["attempt"] == 1


def test_a_failed_tech_lead_attempt_blocks_the_ticket_once_its_attempts_are_spent(
        cast: Any) -> None:
    attempt = finished(cast, "tests_failed", retries_left=0, executor="cloud", cloud_attempts=2)
    after = ticket_attempt_finished(attempt=attempt, options=OPTIONS)
    assert after.status == "blocked"
    assert after.block_reason.startswith("The Tech Lead's attempt failed too")


def test_a_failed_tech_lead_attempt_is_tried_again_while_the_policy_allows(cast: Any) -> None:
    attempt = finished(cast, "tests_failed", retries_left=0, executor="cloud", cloud_attempts=1)
    assert ticket_attempt_finished(attempt=attempt, options=OPTIONS).status == "escalated"


@pytest.mark.parametrize(("audit_cloud_work", "state"), [(False, "awaiting_acceptance"),
                                                         (True, "auditing")])
def test_the_tech_leads_own_work_is_audited_only_when_the_policy_says_all_work(
        cast: Any, audit_cloud_work: bool, state: str) -> None:
    attempt = finished(cast, "passed", retries_left=0, executor="cloud", cloud_attempts=1)
    options = engine_options(escalation=True, audit=True, audit_cloud_work=audit_cloud_work)
    after = ticket_attempt_finished(attempt=attempt, options=options)
    assert after.status == state
    if not audit_cloud_work:
        moved = AuditEvent.objects.filter(type="ticket.transition", target_id=str(after.pk),
                                          data__to="awaiting_acceptance").get()
        assert moved.data["audit"] == "skipped: the policy audits only the local coders' work"


def test_a_failed_audit_feeds_its_findings_back_and_costs_a_retry(cast: Any) -> None:
    attempt = finished(cast, "passed", retries_left=2)
    Ticket.objects.filter(pk=attempt.ticket_id).update(status="auditing")
    after = ticket_audited(attempt=attempt, passed=False, summary="Rounds the wrong way.",
                           findings=[{"severity": "major", "path": "totals.py",
                                      "message": "ROUND_HALF_EVEN is not half-up"}],
                           actor=SYSTEM, options=OPTIONS)
    assert after is not None
    assert (after.status, after.retries_left, after.audit_failures) == ("retrying", 1, 1)
    assert "ROUND_HALF_EVEN is not half-up" in after.feedback


def test_audits_failing_too_often_block_the_ticket(cast: Any) -> None:
    attempt = finished(cast, "passed", retries_left=2, audit_failures=2)
    Ticket.objects.filter(pk=attempt.ticket_id).update(status="auditing")
    after = ticket_audited(attempt=attempt, passed=False, summary="Still wrong.", findings=[],
                           actor=SYSTEM, options=engine_options(escalation=True, audit=True,
                                                               max_audit_failures=3))
    assert after is not None and after.status == "blocked"
    assert "The audit failed 3 times" in after.block_reason


def test_policy_escalation_switch_reaches_the_engine(cast: Any) -> None:
    from agents.engine.options import options_for

    policy_update(organization=cast.org, actor=SYSTEM, changes={"escalation_allowed": False})
    options = options_for(project=cast.project)
    assert not options.escalation
    assert options.no_escalation_why == "escalation to the Tech Lead is not allowed by policy"


# --- Endpoint slots, claims and fences -----------------------------------------------------------

def test_an_endpoint_never_has_more_calls_than_its_slots(cast: Any) -> None:
    box = coder(cast, max_concurrency=2)
    assert routing.slot_acquire(endpoint=box, holder="a", seconds=60)
    assert routing.slot_acquire(endpoint=box, holder="b", seconds=60)
    assert not routing.slot_acquire(endpoint=box, holder="c", seconds=60)
    assert not routing.slot_acquire(endpoint=box, holder="a", seconds=60)  # a holds one
    routing.slot_release(holder="a")
    assert routing.slot_acquire(endpoint=box, holder="c", seconds=60)
    # A holder that died frees its slot when its lease runs out.
    EndpointLease.objects.filter(holder="b").update(expires_at=timezone.now()
                                                    - timedelta(seconds=1))
    assert routing.slot_acquire(endpoint=box, holder="d", seconds=60)
    held = EndpointLease.objects.filter(endpoint=box, expires_at__gte=timezone.now())
    assert sorted(held.values_list("holder", flat=True)) == ["c", "d"]
    # A delivery of a step whose worker died takes its own ran-out lease over.
    EndpointLease.objects.filter(holder="c").update(expires_at=timezone.now()
                                                    - timedelta(seconds=1))
    with CaptureQueriesContext(connection) as taking:
        assert routing.slot_acquire(endpoint=box, holder="c", seconds=60)
    assert len([q for q in taking if "SAVEPOINT" not in q["sql"]]) == 2  # lock, insert
    assert EndpointLease.objects.get(holder="c").expires_at > timezone.now()
    # Recovery removes the rows of leases that ran out.
    recovery.recover()
    assert sorted(EndpointLease.objects.values_list("holder", flat=True)) == ["c", "d"]


@pytest.mark.django_db(transaction=True)
def test_workers_racing_for_an_endpoints_slots_never_take_more_than_it_has(cast: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are exercised against PostgreSQL")
    box = coder(cast, max_concurrency=3)
    start = threading.Barrier(12)
    taken: list[str] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            if routing.slot_acquire(endpoint=box, holder=f"w{n}", seconds=60):
                taken.append(f"w{n}")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 3
    assert sorted(EndpointLease.objects.values_list("holder", flat=True)) == sorted(taken)


def test_a_claim_is_exclusive_until_its_lease_expires_and_fences_the_old_worker(cast: Any) -> None:
    attempt = running_attempt(cast, stage=AttemptStage.PENDING)
    read_early = Attempt.objects.get(pk=attempt.pk)  # by a worker that claims it late
    first = attempt_claim(attempt=Attempt.objects.get(pk=attempt.pk),
                          stages=[AttemptStage.PENDING], to=AttemptStage.CODING,
                          lease_seconds=60)
    assert first is not None and first.deliveries == 1
    assert attempt_claim(attempt=Attempt.objects.get(pk=attempt.pk),
                         stages=[AttemptStage.PENDING], to=AttemptStage.CODING,
                         lease_seconds=60) is None
    later = timezone.now() + timedelta(seconds=61)
    second = attempt_claim(attempt=read_early, stages=[AttemptStage.PENDING],
                           to=AttemptStage.CODING, lease_seconds=60, now=later)
    assert second is not None and second.deliveries == 2
    assert Attempt.objects.get(pk=attempt.pk).deliveries == 2
    with pytest.raises(Conflict):
        attempt_finish(attempt=first, outcome="passed", delivery=first.deliveries)
    attempt_finish(attempt=second, outcome="passed", delivery=second.deliveries)
    assert Attempt.objects.get(pk=attempt.pk).outcome == "passed"


def test_recovery_hands_a_lost_step_back_and_fails_a_poison_one(
        cast: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.engine import enqueue

    settings.HAAO_MAX_DELIVERIES = 2
    attempt = running_attempt(cast, stage=AttemptStage.PENDING)
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(enqueue, "_send", lambda name, **kw: sent.append((name, kw["kwargs"])))

    def lose_the_worker() -> recovery.Recovered:
        assert attempt_claim(attempt=Attempt.objects.get(pk=attempt.pk),
                             stages=[AttemptStage.PENDING], to=AttemptStage.CODING,
                             lease_seconds=60) is not None
        Attempt.objects.filter(pk=attempt.pk).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1))
        return recovery.recover()

    first = lose_the_worker()
    assert first.stalled == [attempt.pk] and not first.poisoned
    again = Attempt.objects.get(pk=attempt.pk)
    assert (again.stage, again.lost) == (AttemptStage.PENDING, 1)
    assert ("model_step", {"attempt_id": attempt.pk}) in sent

    second = lose_the_worker()
    assert second.poisoned == [attempt.pk]
    final = Attempt.objects.get(pk=attempt.pk)
    assert final.outcome == "error"
    assert "worker was lost 2 times" in final.error
    assert Ticket.objects.get(pk=attempt.ticket_id).status == "retrying"


class Received:
    """A step's message as a worker's consumer sees it on receipt."""

    def __init__(self, name: str, attempt_id: Any) -> None:
        self.name, self.kwargs = name, {"attempt_id": str(attempt_id)}


@pytest.mark.parametrize("stage, step", [(AttemptStage.PENDING, "model_step"),
                                         (AttemptStage.ANSWERED, "check_step")])
def test_a_step_whose_worker_died_before_claiming_it_is_sent_again_at_once(
        cast: Any, monkeypatch: pytest.MonkeyPatch, stage: str, step: str) -> None:
    attempt = running_attempt(cast, stage=stage)
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(enqueue, "_send", lambda name, **kw: sent.append((name, kw["kwargs"])))
    workers.beat()  # what the worker's heartbeat thread does every few seconds
    workers.note_holder(request=Received(f"haao.{step}", attempt.pk))

    # Its worker beats: the step waits in that worker, nothing is sent again.
    assert not recovery.recover().nudged and sent == []
    # The worker is killed (no goodbye): once its heartbeat lapses the step is sent again,
    # long before HAAO_RESEND_AFTER_SECONDS.
    cache.delete(f"haao:worker:{workers.incarnation()}")
    done = recovery.recover()
    assert done.nudged == [attempt.pk]
    assert sent == [(step, {"attempt_id": attempt.pk})]


@pytest.mark.parametrize("stage, step, back", [
    (AttemptStage.CODING, "model_step", AttemptStage.PENDING),
    (AttemptStage.CHECKING, "check_step", AttemptStage.ANSWERED)])
def test_a_claimed_step_whose_worker_died_is_taken_back_before_its_lease_runs_out(
        cast: Any, monkeypatch: pytest.MonkeyPatch, stage: str, step: str, back: str) -> None:
    attempt = running_attempt(cast, stage=back)
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(enqueue, "_send", lambda name, **kw: sent.append((name, kw["kwargs"])))
    workers.beat()
    workers.note_holder(request=Received(f"haao.{step}", attempt.pk))
    claimed = attempt_claim(attempt=Attempt.objects.get(pk=attempt.pk), stages=[attempt.stage],
                            to=stage, lease_seconds=60)
    assert claimed is not None

    # Its worker beats: the claim stands for its whole lease.
    assert not recovery.recover().stalled and sent == []
    # The worker is killed: its step goes back at once, not a minute later.
    cache.delete(f"haao:worker:{workers.incarnation()}")
    assert recovery.recover().stalled == [attempt.pk]
    again = Attempt.objects.get(pk=attempt.pk)
    assert (again.stage, again.lost) == (back, 1)
    assert sent == [(step, {"attempt_id": attempt.pk})]
    # The old worker, were it alive after all, is fenced once the step is claimed again.
    assert attempt_claim(attempt=Attempt.objects.get(pk=attempt.pk), stages=[back], to=stage,
                         lease_seconds=60) is not None
    with pytest.raises(Conflict):
        attempt_finish(attempt=claimed, outcome="passed", delivery=claimed.deliveries)


def test_a_waiting_step_no_worker_received_waits_for_the_resend_delay(
        cast: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    attempt = running_attempt(cast, stage=AttemptStage.PENDING)
    monkeypatch.setattr(enqueue, "_send", lambda name, **kw: None)
    assert not recovery.recover().nudged  # in the queue, perhaps behind a backlog
    Attempt.objects.filter(pk=attempt.pk).update(step_at=timezone.now() - timedelta(
        seconds=settings.HAAO_RESEND_AFTER_SECONDS + 1))
    assert recovery.recover().nudged == [attempt.pk]


def test_a_message_with_a_malformed_id_is_dropped(cast: Any, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING):
        tasks.dispatch(project_id="../../etc")
        tasks.model_step(attempt_id="1; DROP TABLE")
    assert "project_id='../../etc' is not an id" in caplog.text
    assert "attempt_id='1; DROP TABLE' is not an id" in caplog.text


def test_a_cancelled_tickets_waiting_attempt_is_never_run(cast: Any) -> None:
    box = coder(cast)
    ticket(cast)
    [attempt] = steps.dispatch_project(project_id=cast.project.pk)
    Ticket.objects.filter(pk=attempt.ticket_id).update(status="cancelled")
    steps.model_step(attempt_id=attempt.pk)  # the coder at 127.0.0.1:9 is never called
    ended = Attempt.objects.get(pk=attempt.pk)
    assert (ended.outcome, ended.error) == ("error",
                                            "The ticket was cancelled before this step ran.")
    assert not EndpointLease.objects.filter(endpoint=box).exists()


# --- The model step against a scripted coder over HTTP -----------------------------------------

@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Tasks the steps enqueue, recorded instead of sent."""
    from agents.engine import enqueue

    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(enqueue, "_send", lambda name, **kw: calls.append((name, kw)))
    return calls


def test_the_model_step_streams_progress_and_hands_the_answer_to_the_checks(
        cast: Any, sent: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.models import ModelCall
    from sample_models import OpenAIServer

    monkeypatch.setattr(steps.model, "TOKEN_EVENT_SECONDS", 0.0)
    answer = "<<<<<<< FILE notes/a.txt\nhello\n>>>>>>> END\n"
    with OpenAIServer(flavor="vllm") as server, loopback_allowed():
        server.answer = lambda request: answer
        coder(cast, base_url=server.url)
        ticket(cast)
        [attempt] = steps.dispatch_project(project_id=cast.project.pk)
        steps.model_step(attempt_id=attempt.pk)
        steps.model_step(attempt_id=attempt.pk)  # delivered twice: nothing more happens
    done = Attempt.objects.get(pk=attempt.pk)
    assert (done.stage, done.answer, done.deliveries) == (AttemptStage.ANSWERED, answer, 1)
    assert len([r for r in server.requests if r.path == "/v1/chat/completions"]) == 1
    assert ModelCall.objects.filter(attempt=attempt).count() == 1
    types = list(ProgressEvent.objects.filter(target_id=str(attempt.ticket_id))
                 .order_by("id").values_list("type", flat=True))
    assert types.index("attempt.started") < types.index("attempt.tokens") \
        < types.index("attempt.answered")
    # The token events carry what the model wrote, piece by piece: together, the answer.
    streamed = "".join(event.data["text"] for event in ProgressEvent.objects.filter(
        target_id=str(attempt.ticket_id), type="attempt.tokens").order_by("id"))
    assert streamed and answer.startswith(streamed)
    assert ("check_step", {"kwargs": {"attempt_id": attempt.pk}, "queue": "checks",
                           "on_commit": True}) in sent
    assert not EndpointLease.objects.exists()  # the slot was given back


def test_a_ticket_cancelled_while_its_model_writes_is_not_checked_in_the_models_task(
        cast: Any, sent: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that takes the checks' queue checks the answer in the model's own task,
    with the attempt and ticket it read when the task began: the ticket's status is read
    again first, so work on a ticket cancelled meanwhile is not checked."""
    from sample_models import OpenAIServer
    from tickets.models import CheckResult

    monkeypatch.setattr(workers, "_queues", frozenset(routing.SHARED_QUEUES))
    store = steps.model.attempt_answered

    def answered_then_cancelled(**kwargs: Any) -> bool:
        stored = store(**kwargs)
        Ticket.objects.filter(pk=kwargs["attempt"].ticket_id).update(status="cancelled")
        return stored

    monkeypatch.setattr(steps.model, "attempt_answered", answered_then_cancelled)
    with OpenAIServer(flavor="vllm") as server, loopback_allowed():
        server.answer = lambda request: "<<<<<<< FILE notes/a.txt\nhello\n>>>>>>> END\n"
        coder(cast, base_url=server.url)
        ticket(cast)
        [attempt] = steps.dispatch_project(project_id=cast.project.pk)
        steps.model_step(attempt_id=attempt.pk)
    ended = Attempt.objects.get(pk=attempt.pk)
    assert (ended.outcome, ended.error) == ("error",
                                            "The ticket was cancelled before this step ran.")
    assert not CheckResult.objects.filter(attempt=attempt).exists()
    assert [name for name, _ in sent if name == "check_step"] == []
    assert Ticket.objects.get(pk=attempt.ticket_id).status == "cancelled"


def test_an_unreachable_coder_costs_no_retry_and_its_work_moves(
        cast: Any, sent: list[tuple[str, dict[str, Any]]]) -> None:
    from sample_models import OpenAIServer

    with OpenAIServer(flavor="vllm") as server:
        down_url = server.url  # stopped when the block ends: connections are refused
    with loopback_allowed():
        down = coder(cast, "Box A", base_url=down_url)
        work = ticket(cast)
        [attempt] = steps.dispatch_project(project_id=cast.project.pk)
        assert attempt.inference_endpoint_id == down.pk
        spare = coder(cast, "Box B")
        steps.model_step(attempt_id=attempt.pk)
    waiting = Attempt.objects.get(pk=attempt.pk)
    assert (waiting.stage, waiting.outcome) == (AttemptStage.PENDING, "running")
    assert waiting.inference_endpoint_id == spare.pk and waiting.queue == "local"
    assert InferenceEndpoint.objects.get(pk=down.pk).health_status == "failing"
    assert Ticket.objects.get(pk=work.pk).retries_left == work.retries_left
    assert ProgressEvent.objects.filter(type="attempt.waiting").exists()
    assert AuditEvent.objects.get(type="attempt.moved").data["to"] == "Box B"
    assert [name for name, _ in sent].count("model_step") == 1


def test_an_audit_the_tech_lead_refuses_blocks_the_ticket_instead_of_retrying_forever(
        cast: Any, sent: list[tuple[str, dict[str, Any]]]) -> None:
    from agents.models import ModelCall
    from agents.pricing import CURRENT_SONNET
    from sample_models import AnthropicServer

    attempt = finished(cast, "passed")
    Ticket.objects.filter(pk=attempt.ticket_id).update(status="auditing")
    with AnthropicServer(api_key="the-right-key") as server, loopback_allowed():
        agent_services.endpoint_create(
            organization=cast.org, actor=cast.admin,
            values={"name": "Claude", "kind": "anthropic", "base_url": server.url,
                    "model": CURRENT_SONNET, "role": "tech_lead"}, api_key="a-revoked-key")
        steps.audit_step(ticket_id=attempt.ticket_id)
    ticket = Ticket.objects.get(pk=attempt.ticket_id)
    assert ticket.status == "blocked"
    assert ticket.block_reason.startswith("The Tech Lead could not audit the work:")
    assert "401" in ticket.block_reason or "invalid x-api-key" in ticket.block_reason
    assert [name for name, _ in sent if name == "audit"] == []
    assert ModelCall.objects.filter(attempt=attempt, role="audit").count() == 1

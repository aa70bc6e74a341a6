"""The loop survives what production does to it: killed workers, messages delivered twice,
an endpoint that goes down, and tenants whose work must stay on their own machines."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from agents import tasks
from agents.engine.workers import GONE_AFTER_SECONDS, held_by_lost_workers
from agents.models import CallOutcome, ModelCall
from agents.workspaces.git import git
from haao.audit import Actor
from policies.services import policy_update
from sample_models import AnthropicServer, OpenAIServer, RecordedRequest
from sample_models.base import last_user_text
from sample_models.rounding import RIGHT_FIX
from tests.factories import ProjectFactory
from tests.fixtures import coder_endpoint, tech_lead_endpoint
from tests.loop import (
    Processes,
    TechLead,
    add_endpoints,
    approve,
    chats,
    events,
    kinds,
    proposed,
    reach,
    state,
    status_of,
    wait_for,
    workers_idle,
    workspace_root,
)
from tests.samples import invoice_ticket
from tickets import services
from tickets.models import Attempt, CheckResult, Project, Requirement, Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]

LEASE = 6  # HAAO_ATTEMPT_LEASE_SECONDS in tests/loop.py
FINAL = ("awaiting_acceptance", "blocked")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SlowCoder:
    """Answers the right fix after `seconds`; counts the requests that arrived."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.arrived = 0
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> str:
        with self.lock:
            self.arrived += 1
        time.sleep(self.seconds)
        return RIGHT_FIX


def assert_no_duplicates(tickets: list[Ticket]) -> None:
    """Attempt numbers run 1..n per ticket; one OK coder usage row per attempt that got to
    its checks; no idempotency key twice."""
    for ticket in tickets:
        numbers = list(Attempt.objects.filter(ticket=ticket).order_by("number")
                       .values_list("number", flat=True))
        assert numbers == list(range(1, len(numbers) + 1)), (ticket.key, numbers)
    keys = [k for k in ModelCall.objects.values_list("idempotency_key", flat=True) if k]
    assert not [k for k, n in Counter(keys).items() if n > 1]
    checked = Attempt.objects.filter(
        pk__in=CheckResult.objects.values("attempt"), executor="local")
    for attempt in checked:
        ok = ModelCall.objects.filter(attempt=attempt, role="code", outcome=CallOutcome.OK)
        assert ok.count() == 1, (attempt.ticket_id, attempt.number, ok.count())


# --- kill -9 ------------------------------------------------------------------------------------

KILLS = 20
TICKETS = 12


@pytest.mark.timeout(1200)  # about 270 s on two cores
def test_twenty_killed_workers_lose_no_ticket_and_duplicate_nothing(
        cast: Any, project: Project, cloud: AnthropicServer, processes: Processes) -> None:
    coder = SlowCoder(1.5)
    with OpenAIServer(flavor="lmstudio", answer=coder) as server:
        coder_endpoint(cast.org, cast.admin, base_url=server.url, name="Workstation",
                       max_concurrency=TICKETS)
        tech_lead_endpoint(cast.org, cast.admin, base_url=cloud.url)
        cloud.answer = TechLead(tickets=[invoice_ticket(title=f"Round money, part {n}")
                                         for n in range(1, TICKETS + 1)])
        policy_update(organization=cast.org, project=project, changes={"wip_limit": TICKETS},
                      actor=Actor.of(cast.admin))
        processes.start_worker(concurrency=6)
        processes.start_beat()
        tickets = approve(cast, project, processes)
        assert len(tickets) == TICKETS

        # Kill the worker whenever a coder call is in flight; start a new one at once.
        unrecovered: dict[Any, tuple[int, int, float]] = {}
        recovered_after: list[float] = []

        def note_recoveries() -> None:
            # Recovered: handed back to its step (lost counted), claimed again, or ended.
            for pk, (deliveries, lost, killed_at) in list(unrecovered.items()):
                attempt = Attempt.objects.get(pk=pk)
                if attempt.deliveries > deliveries or attempt.lost > lost \
                        or attempt.outcome != "running":
                    recovered_after.append(time.monotonic() - killed_at)
                    del unrecovered[pk]

        for _ in range(KILLS):
            seen = coder.arrived
            wait_for(lambda seen=seen: note_recoveries() or coder.arrived > seen,  # type: ignore[misc]
                     what="a coder call to interrupt", processes=processes, interval=0.1)
            wait_for(coding, what="the attempt to be claimed for coding", processes=processes)
            processes.kill("worker")
            killed_at = time.monotonic()
            for attempt in Attempt.objects.filter(outcome="running",
                                                  stage__in=("coding", "checking")):
                unrecovered.setdefault(attempt.pk,
                                       (attempt.deliveries, attempt.lost, killed_at))
            processes.start_worker(concurrency=6)
            # Recovery runs in the worker: the clock of work still to recover starts again
            # when a worker is back (the next kill may come before its lease ran out).
            restarted = time.monotonic()
            for pk, (deliveries, lost, _) in list(unrecovered.items()):
                unrecovered[pk] = (deliveries, lost, restarted)

        def settled() -> bool:
            note_recoveries()
            return all(t.status in FINAL for t in Ticket.objects.filter(project=project))

        wait_for(settled, timeout=150, what="every ticket to settle", processes=processes)
        note_recoveries()

    tickets = list(Ticket.objects.filter(project=project))
    assert len(tickets) == TICKETS
    assert Counter(t.status for t in tickets)["awaiting_acceptance"] >= 1, state()
    assert not Attempt.objects.filter(outcome="running").exists()
    assert not unrecovered, state()
    assert recovered_after and max(recovered_after) <= LEASE + 60, recovered_after
    assert sum(a.lost for a in Attempt.objects.all()) >= 1
    assert_no_duplicates(tickets)


class SlowFirstAudit(TechLead):
    """A Tech Lead whose first audit takes `seconds` (long enough to kill its worker)."""

    def __init__(self, *, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds
        self.audits = 0

    def __call__(self, request: RecordedRequest) -> Any:
        if any(tool.get("name") == "submit_audit" for tool in request.body.get("tools") or []):
            self.audits += 1
            if self.audits == 1:
                time.sleep(self.seconds)
        return super().__call__(request)


def test_an_audit_run_in_the_attempts_task_is_sent_again_at_once_when_its_worker_dies(
        cast: Any, project: Project, cloud: AnthropicServer, processes: Processes) -> None:
    """A worker that takes every queue audits passing work in the attempt's own task, so no
    audit message exists; killed during that audit, it is seen as gone and the audit is
    sent again at once, not after HAAO_RESEND_AFTER_SECONDS."""
    processes.env_extra["HAAO_RESEND_AFTER_SECONDS"] = "300"
    with OpenAIServer(flavor="lmstudio", answer=SlowCoder(0)) as server:
        add_endpoints(cast, server, cloud)
        tech_lead = cloud.answer = SlowFirstAudit(seconds=20, tickets=[invoice_ticket()])
        processes.start_worker()
        processes.start_beat()
        [ticket] = approve(cast, project, processes)
        wait_for(lambda: tech_lead.audits == 1, what="the first audit to be asked",
                 processes=processes)
        log = (processes.workdir / "worker.log").read_text()
        assert "Task haao.model_step[" in log
        assert "Task haao.check_step[" not in log and "Task haao.audit[" not in log

        processes.kill("worker")
        killed = time.monotonic()
        processes.start_worker("second")
        ticket = reach(ticket, "awaiting_acceptance", processes)
    assert time.monotonic() - killed <= GONE_AFTER_SECONDS + 30
    assert "Task haao.audit[" in (processes.workdir / "second.log").read_text()
    assert kinds(cloud).count("audit") == 2
    assert ModelCall.objects.filter(ticket=ticket, role="audit", outcome="ok").count() == 1


def test_an_attempt_that_kills_its_worker_three_times_is_failed_and_the_ticket_moves_on(
        cast: Any, project: Project, cloud: AnthropicServer, processes: Processes) -> None:
    coder = SlowCoder(30)
    with OpenAIServer(flavor="lmstudio", answer=coder) as server:
        coder_endpoint(cast.org, cast.admin, base_url=server.url, name="Workstation")
        tech_lead_endpoint(cast.org, cast.admin, base_url=cloud.url)
        cloud.answer = TechLead(tickets=[invoice_ticket()])
        processes.start_worker()
        processes.start_beat()
        [ticket] = approve(cast, project, processes)
        for kill in range(3):  # HAAO_MAX_DELIVERIES in tests/loop.py
            wait_for(lambda kill=kill: coder.arrived > kill,  # type: ignore[misc]
                     what=f"delivery {kill + 1} of the attempt", processes=processes)
            wait_for(coding, what="the attempt to be claimed for coding", processes=processes)
            processes.kill("worker")
            processes.start_worker()
        coder.seconds = 0
        ticket = reach(ticket, "awaiting_acceptance", processes)

    first, second = Attempt.objects.filter(ticket=ticket).order_by("number")
    assert first.outcome == "error" and first.lost == 2  # the third loss ends it
    assert "lost 3 times" in first.error and "stopped delivering it" in first.error
    assert second.outcome == "passed"
    assert ticket.retries_left == ticket.retry_budget - 1


# --- Re-delivery ---------------------------------------------------------------------------------

def coding() -> bool:
    """A worker has claimed an attempt and is asking the coder (its lease is running)."""
    return Attempt.objects.filter(outcome="running", stage="coding").exists()


def twice(task: Any, queue: str, **kwargs: Any) -> None:
    """Publish the task again, as a broker that redelivers would."""
    for _ in range(2):
        task.apply_async(kwargs={k: str(v) for k, v in kwargs.items()}, queue=queue)


def test_every_task_delivered_again_has_no_second_effect(
        cast: Any, project: Project, coder: OpenAIServer, cloud: AnthropicServer,
        processes: Processes) -> None:
    # A coder that takes a second: the redeliveries below arrive while it works.
    coder.answer = lambda request: (time.sleep(1), RIGHT_FIX)[1]
    cloud.answer = TechLead(tickets=[invoice_ticket()])
    add_endpoints(cast, coder, cloud)
    processes.start_worker(concurrency=4)
    processes.start_beat()

    requirement = services.requirement_create(
        project=project, actor=cast.product_owner, title="Round totals correctly",
        text="Invoice totals must round half a cent up.")
    twice(tasks.decompose, "cloud", requirement_id=requirement.pk)
    wait_for(lambda: Requirement.objects.get(pk=requirement.pk).status == "proposed",
             what="the proposal", processes=processes)
    requirement.refresh_from_db()
    [ticket] = services.requirement_approve(requirement=requirement, actor=cast.product_owner)
    twice(tasks.dispatch, "control", project_id=project.pk)
    attempt = wait_for(lambda: Attempt.objects.filter(ticket=ticket).first(),
                       what="the attempt", processes=processes)
    twice(tasks.model_step, "local", attempt_id=attempt.pk)
    wait_for(lambda: Attempt.objects.get(pk=attempt.pk).stage in ("answered", "checking",
                                                                  "done"),
             what="the answer", processes=processes, interval=0.05)
    twice(tasks.check_step, "checks", attempt_id=attempt.pk)
    wait_for(lambda: status_of(ticket)() in ("auditing", "awaiting_acceptance"),
             what="the audit", processes=processes, interval=0.05)
    twice(tasks.audit_step, "cloud", ticket_id=ticket.pk)
    ticket = reach(ticket, "awaiting_acceptance", processes)
    services.ticket_accept(ticket=ticket, actor=cast.product_owner)
    twice(tasks.merge, "checks", ticket_id=ticket.pk)
    wait_for(lambda: Ticket.objects.get(pk=ticket.pk).merged_commit, what="the merge",
             processes=processes)
    # And everything once more after the fact.
    twice(tasks.decompose, "cloud", requirement_id=requirement.pk)
    twice(tasks.dispatch, "control", project_id=project.pk)
    twice(tasks.model_step, "local", attempt_id=attempt.pk)
    twice(tasks.check_step, "checks", attempt_id=attempt.pk)
    twice(tasks.audit_step, "cloud", ticket_id=ticket.pk)
    twice(tasks.merge, "checks", ticket_id=ticket.pk)
    wait_for(workers_idle, what="the workers to have run every task sent again",
             processes=processes)

    assert Ticket.objects.filter(requirement=requirement).count() == 1
    assert Attempt.objects.filter(ticket=ticket).count() == 1
    assert len(chats(coder)) == 1
    assert kinds(cloud) == ["propose", "audit"]
    assert Counter(ModelCall.objects.values_list("role", flat=True)) == {
        "decompose": 1, "code": 1, "audit": 1}
    types = Counter(e.type for e in events(ticket))
    for once in ("ticket.dispatched", "attempt.started", "attempt.answered", "attempt.finished",
                 "ticket.audited", "ticket.merged"):
        assert types[once] == 1, (once, types)
    bare = workspace_root(processes) / str(project.pk) / "repo"
    merges = git(["log", "--first-parent", "--format=%s", "haao/integration"],
                 cwd=bare).stdout.splitlines()
    assert sum(1 for subject in merges if subject.startswith(ticket.key)) == 1
    assert_no_duplicates([ticket])


# --- An endpoint goes down -------------------------------------------------------------------

def test_work_moves_to_the_other_coder_when_one_goes_down(
        cast: Any, project: Project, cloud: AnthropicServer, processes: Processes) -> None:
    with OpenAIServer(flavor="lmstudio", answer=lambda r: RIGHT_FIX) as first, \
            OpenAIServer(flavor="lmstudio", answer=lambda r: RIGHT_FIX) as second:
        coder_endpoint(cast.org, cast.admin, base_url=first.url, name="A workstation")
        coder_endpoint(cast.org, cast.admin, base_url=second.url, name="B workstation")
        tech_lead_endpoint(cast.org, cast.admin, base_url=cloud.url)
        cloud.answer = TechLead(tickets=[invoice_ticket()])
        processes.start_worker()
        processes.start_beat()
        requirement = proposed(cast, project, processes)
        first.stop()  # the preferred coder (least loaded, first by name) goes down
        [ticket] = services.requirement_approve(requirement=requirement,
                                                actor=cast.product_owner)
        ticket = reach(ticket, "awaiting_acceptance", processes)

    [attempt] = Attempt.objects.filter(ticket=ticket)
    assert attempt.outcome == "passed" and attempt.endpoint == "B workstation"
    assert ticket.retries_left == ticket.retry_budget
    assert len(chats(second)) == 1 and not chats(first)


def test_work_waits_for_its_only_coder_to_come_back(
        cast: Any, project: Project, cloud: AnthropicServer, processes: Processes) -> None:
    port = free_port()
    server = OpenAIServer(port=port, flavor="lmstudio", answer=lambda r: RIGHT_FIX).start()
    try:
        coder_endpoint(cast.org, cast.admin, base_url=server.url, name="Workstation")
        tech_lead_endpoint(cast.org, cast.admin, base_url=cloud.url)
        cloud.answer = TechLead(tickets=[invoice_ticket()])
        processes.start_worker()
        processes.start_beat()
        requirement = proposed(cast, project, processes)
        server.stop()
        [ticket] = services.requirement_approve(requirement=requirement,
                                                actor=cast.product_owner)
        until = time.monotonic() + 3 * LEASE
        while time.monotonic() < until:  # nothing changes for as long as the outage lasts
            current = Ticket.objects.get(pk=ticket.pk)
            assert current.status in ("approved", "queued", "running"), state()
            assert current.retries_left == current.retry_budget
            assert not Attempt.objects.filter(ticket=ticket).exclude(outcome="running")
            time.sleep(0.5)
        server.start()  # back on the same port
        ticket = reach(ticket, "awaiting_acceptance", processes)
    finally:
        server.stop()

    assert [a.outcome for a in Attempt.objects.filter(ticket=ticket)] == ["passed"]
    assert ticket.retries_left == ticket.retry_budget
    assert len(chats(server)) == 1


# --- Tenants with their own machines ---------------------------------------------------------

@pytest.fixture
def servers() -> Iterator[dict[str, OpenAIServer]]:
    with OpenAIServer(flavor="lmstudio", answer=lambda r: RIGHT_FIX) as acme, \
            OpenAIServer(flavor="lmstudio", answer=lambda r: RIGHT_FIX) as globex:
        yield {"acme": acme, "globex": globex}


def test_each_tenants_work_stays_on_its_own_queue_worker_and_endpoint(
        cast: Any, project: Project, repo: Any, cloud: AnthropicServer,
        servers: dict[str, OpenAIServer], processes: Processes) -> None:
    other: Project = ProjectFactory(organization=cast.other_org, key="GLB", name="Globex calc",
                                    repository=str(repo), default_branch="main")
    services.project_grant_set(organization=cast.other_org, project=other,
                               user=cast.outsider, grants={"approve"}, actor=cast.outsider)
    coder_endpoint(cast.org, cast.admin, base_url=servers["acme"].url, name="Acme GPU",
                   dedicated_queue="acme-gpu")
    coder_endpoint(cast.other_org, cast.outsider, base_url=servers["globex"].url,
                   name="Globex GPU", dedicated_queue="globex-gpu")
    tech_lead_endpoint(cast.org, cast.admin, base_url=cloud.url)
    tech_lead_endpoint(cast.other_org, cast.outsider, base_url=cloud.url)
    cloud.answer = TechLead(tickets=[invoice_ticket()])
    processes.start_worker("shared", queues="control,cloud,local,checks")
    processes.start_worker("acme", queues="acme-gpu", concurrency=1)
    processes.start_worker("globex", queues="globex-gpu", concurrency=1)
    processes.start_beat()

    [acme] = approve(cast, project, processes)
    globex_requirement = services.requirement_create(
        project=other, actor=cast.outsider, title="Round Globex totals",
        text="Globex totals must round half a cent up.")
    wait_for(lambda: Requirement.objects.get(pk=globex_requirement.pk).status == "proposed",
             what="Globex's proposal", processes=processes)
    globex_requirement.refresh_from_db()
    [globex] = services.requirement_approve(requirement=globex_requirement,
                                            actor=cast.outsider)
    reach(acme, "awaiting_acceptance", processes)
    reach(globex, "awaiting_acceptance", processes)

    for tenant, ticket, stranger in (("acme", acme, globex), ("globex", globex, acme)):
        prompts = [last_user_text(r.body) for r in chats(servers[tenant])]
        assert len(prompts) == 1
        [attempt] = Attempt.objects.filter(ticket=ticket)
        assert attempt.queue == f"{tenant}-gpu"
        assert ModelCall.objects.get(attempt=attempt, role="code").endpoint_name == (
            f"{tenant.capitalize()} GPU")
        # The model and check steps ran in the tenant's own worker, by its log and pid: in
        # one task, as that worker takes both steps' queue.
        log = (processes.workdir / f"{tenant}.log").read_text()
        assert "Task haao.model_step[" in log
        group = processes.procs[tenant].pid
        assert _group_of(attempt) == group
        [other_attempt] = Attempt.objects.filter(ticket=stranger)
        assert _group_of(other_attempt) != group
    shared_log = (processes.workdir / "shared.log").read_text()
    assert "Task haao.model_step[" not in shared_log
    assert "Task haao.check_step[" not in shared_log


def _group_of(attempt: Attempt) -> int:
    """The process group (that is, the worker) of the pool process that last ran a step."""
    return os.getpgid(int(attempt.worker.rsplit(":", 1)[1]))


def test_recovery_sees_which_live_worker_took_a_step_and_when_that_worker_is_gone(
        processes: Processes) -> None:
    """A real worker notes each model or check step it takes from its queue and beats while
    it lives; killed, it is seen as gone within three beats (agents.engine.workers)."""
    processes.start_worker()
    attempt_id = uuid.uuid4()  # no such attempt: the step itself does nothing
    tasks.model_step.apply_async(kwargs={"attempt_id": str(attempt_id)}, queue="local")
    holder = wait_for(lambda: cache.get(f"haao:step-holder:{attempt_id}"),
                      what="the worker to note the step it took", processes=processes)
    assert cache.get(f"haao:worker:{holder}") is not None  # it beats
    assert held_by_lost_workers([attempt_id]) == set()

    processes.kill("worker")
    killed = time.monotonic()
    wait_for(lambda: held_by_lost_workers([attempt_id]) == {attempt_id},
             what="the killed worker to be seen as gone", processes=processes,
             timeout=GONE_AFTER_SECONDS + 10)
    assert time.monotonic() - killed <= GONE_AFTER_SECONDS + 1

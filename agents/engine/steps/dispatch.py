"""The dispatch step: start a project's next attempts within its WIP limit, on the healthy
endpoint with the most room, after the policy's checks."""

from __future__ import annotations

import logging
from itertools import pairwise
from typing import Any

from django.core.cache import cache

from agents.engine import enqueue, hooks, routing
from agents.engine.steps.common import (
    quietly,
    refuse,
    worker_name,
)
from agents.selectors import spend_refusal
from haao.errors import ApplicationError
from haao.rows import one_or_none
from policies.enforcement import (
    ANY_CALL,
    Refusal,
    command_refusal,
    path_refusal,
)
from policies.selectors import EffectivePolicy, policy_for
from tickets.models import (
    Attempt,
    AttemptOutcome,
    ExecutorKind,
    Project,
    Ticket,
    TicketStatus,
)
from tickets.services.attempts import AttemptStart
from tickets.services.engine import (
    IN_PROGRESS,
    WAITING_FOR_ATTEMPT,
    dependency_problems,
    ticket_block,
    tickets_dispatch,
    tickets_requeue,
)
from tickets.spec import spec_clean

logger = logging.getLogger(__name__)
S = TicketStatus

# How long a dispatcher may hold its project's mutex (it lets go when done).
DISPATCH_MUTEX_SECONDS = 60
# Queued tickets loaded at a time while filling the WIP room.
DISPATCH_PAGE = 50


def dispatch_project(*, project_id: Any) -> list[Attempt]:
    """Start the next attempts of a project: waiting work first, dependencies first, within
    the WIP limit, each on the healthy endpoint with the most room."""
    cache.delete(hooks.dispatch_mark(project_id))  # changes from now on need a new dispatch
    project = one_or_none(Project.objects.select_related("organization"), pk=project_id)
    if project is None:
        logger.warning("Project %s to dispatch does not exist.", project_id)
        return []
    # Most runs follow a ticket leaving the WIP when nothing waits: one query, not seven.
    if not (Ticket.objects.for_org(project.organization)
            .filter(project=project, status__in=(*WAITING_FOR_ATTEMPT, S.APPROVED, S.REJECTED))
            .exists()):
        return []
    # One dispatcher per project at a time, or the WIP count races. The mutex is not a row
    # lock held across the loop: each ticket's dispatch commits on its own, so no dispatcher
    # holds the audit chain while it waits for the next ticket's row.
    mutex = f"haao:dispatching:{project.pk}"
    if not cache.add(mutex, worker_name(), timeout=DISPATCH_MUTEX_SECONDS):
        enqueue.dispatch(project_id=project.pk, on_commit=False, countdown=1)
        return []
    try:
        return _dispatch(project)
    finally:
        cache.delete(mutex)


def _dispatch(project: Project) -> list[Attempt]:
    """Choose the tickets and their endpoints in Python (the policy's refusals, dependencies,
    the coders' room), then start them all in one transaction (tickets_dispatch)."""
    policy = policy_for(project=project)
    tickets_requeue(project=project, retry_budget=policy.retry_budget)
    organization = project.organization
    chosen: list[AttemptStart] = []
    coders = routing.CoderPicker(organization=organization,
                                 self_hosted_only=policy.data_residency)
    tickets = Ticket.objects.for_org(organization).filter(project=project)
    room = policy.wip_limit - tickets.filter(status__in=IN_PROGRESS).count()
    idle = (tickets.exclude(attempts__outcome=AttemptOutcome.RUNNING)
            .select_related("project__organization").prefetch_related("dependencies")
            .order_by("created_at", "order", "number"))
    # Retries and escalations hold their WIP place already; new work waits for one.
    for ticket in idle.filter(status__in=(S.RETRYING, S.ESCALATED)).distinct():
        start = _choose(ticket, organization, policy, coders)
        if start is not None:
            chosen.append(start)
    # Ids only for the whole queue; tickets are loaded a page at a time until the WIP room is
    # used, so a long queue costs one cheap query per dispatch. The first page is about the
    # room's size (a ticket leaving the WIP makes room for one, not fifty).
    queued: list[Any] = []
    if room > 0 and not coders.none_left:
        queued = list(idle.filter(status=S.QUEUED).distinct().values_list("pk", flat=True))
    first = min(DISPATCH_PAGE, 2 * room)
    bounds = [0, *range(first, len(queued), DISPATCH_PAGE), len(queued)]
    pages = (idle.filter(pk__in=queued[start:end]) for start, end in pairwise(bounds))
    for ticket in (ticket for page in pages for ticket in page):
        if room <= 0 or coders.none_left:
            break  # the WIP room is used, or no healthy coder: the rest waits too
        ready, why = dependency_problems(ticket=ticket)
        if why:
            quietly(ticket_block, ticket=ticket, reason=why)
            continue
        if not ready:
            continue
        start = _choose(ticket, organization, policy, coders)
        if start is not None:
            chosen.append(start)
            room -= 1
    started: list[Attempt] = quietly(tickets_dispatch, starts=chosen,
                                     policy_version=policy.version) or []
    return started


def _choose(ticket: Ticket, organization: Any, policy: EffectivePolicy,
            coders: routing.CoderPicker) -> AttemptStart | None:
    """The ticket's next attempt: on the Tech Lead if it was escalated, else on a coder; None
    when it was refused or blocked, or no coder can take it now (`coders.none_left`; it
    waits, and recovery dispatches again). The policy is checked first: a ticket whose checks
    could never run, or whose cloud budget is spent, is blocked without a model call."""
    refusal = dispatch_refusal(ticket, policy)
    if refusal is not None:
        refuse(ticket, refusal, policy, point="dispatch")
        return None
    residency = policy.data_residency
    if ticket.status == S.ESCALATED:
        endpoint = routing.tech_lead(organization=organization, self_hosted_only=residency)
        if endpoint is None:
            where = "no enabled self-hosted Tech Lead endpoint (data residency is on)" \
                if residency else "no enabled Tech Lead endpoint"
            quietly(ticket_block, ticket=ticket,
                    reason=f"It was escalated, but the organization has {where}.")
            return None
        return AttemptStart(ticket=ticket, executor=ExecutorKind.CLOUD, endpoint=endpoint,
                            queue=routing.attempt_queue(endpoint))
    endpoint = coders.pick()
    if endpoint is None:
        return None
    return AttemptStart(ticket=ticket, executor=ExecutorKind.LOCAL, endpoint=endpoint,
                        queue=routing.attempt_queue(endpoint))


def dispatch_refusal(ticket: Ticket, policy: EffectivePolicy) -> Refusal | None:
    """What the policy refuses before a ticket's next attempt: a Definition-of-Done program
    it does not allow (no attempt could pass), or, for the Tech Lead, a spent cloud cap."""
    try:
        spec = spec_clean(ticket.spec)
    except ApplicationError:
        return None  # the attempt itself reports a broken spec
    for entry in spec["definition_of_done"]:
        refusal = command_refusal(policy, entry.get("command") or [])
        if refusal is not None:
            return refusal
    # A ticket that may change only files the policy protects could never be done.
    named = [path for path in spec["allowed_paths"] if not any(c in path for c in "*?")]
    if named and len(named) == len(spec["allowed_paths"]):
        refusals = [path_refusal(policy, path) for path in named]
        if all(refusals):
            return refusals[0]
    if ticket.status == S.ESCALATED:
        return spend_refusal(policy, organization=ticket.project.organization, ticket=ticket,
                             estimate=ANY_CALL)
    return None



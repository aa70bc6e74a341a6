"""Delivering an integration branch: push it to the team's remote, open or update its pull
request, and record where the work went. HAAO never force-pushes: a remote branch with
commits HAAO did not write is merged into HAAO's (when clean) or left alone with the reason.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from agents.delivery.branches import branch_advance
from agents.delivery.packs import commits_ensure, pack_save
from agents.delivery.selectors import branch_tickets
from agents.engine import enqueue
from agents.forges import ForgeError, forge_for
from agents.models import DeliveryStatus, IntegrationBranch, PullRequestState
from agents.selectors import NO_COST, ticket_costs
from agents.workspaces.attempts import merge_commits
from agents.workspaces.git import WorkspaceError, git
from agents.workspaces.remote import remote_access, workspace_of
from agents.workspaces.store import is_ancestor
from haao.audit import SYSTEM, Actor, audit_record
from haao.errors import ApplicationError
from haao.text import redact_userinfo
from tickets.models import DeliveryMode, Project
from tickets.repositories import forge_defaults
from tickets.services import requirement_deliver

logger = logging.getLogger(__name__)

# Back-off between tries of a failed delivery: 1, 2, 4 … minutes, at most an hour.
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 3600
PUSH_TIMEOUT = 300.0
# An HTTP 401/403 in git's words ("The requested URL returned error: 403"), not a port number.
_HTTP_REFUSED = re.compile(r"\berror: 40[13]\b|\b40[13] (?:forbidden|unauthorized)")
# How long a delivery waits when another worker is delivering the same branch.
DELIVERY_BUSY_SECONDS = 5


class DeliveryFailed(ApplicationError):
    """The branch could not be delivered; the message says why in words an admin can act on."""

    code = "delivery_failed"


def retry_delay(tries: int) -> timedelta:
    """How long a branch waits after its `tries`-th failed delivery."""
    return timedelta(seconds=min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, tries - 1)))


def branch_deliver(*, branch_id: Any) -> IntegrationBranch | None:
    """Push the branch and open or update its pull request; a failure is recorded on the
    branch with its reason and retried later (agents.engine.recovery). Safe to run twice."""
    branch = (IntegrationBranch.objects.select_related("project__organization", "requirement")
              .filter(pk=branch_id).first())
    if branch is None:
        logger.warning("Integration branch %s to deliver does not exist.", branch_id)
        return None
    project = branch.project
    if project.delivery == DeliveryMode.NONE or branch.head == branch.base:
        return branch
    # One delivery of a branch at a time: two pushes racing would refuse each other.
    claim = f"haao:delivering:{branch.pk}"
    if not cache.add(claim, "1", timeout=int(PUSH_TIMEOUT) * 2):

        enqueue.deliver(branch_id=branch.pk, organization=project.organization,
                        on_commit=False, countdown=DELIVERY_BUSY_SECONDS)
        return branch
    try:
        return _deliver(branch)
    finally:
        cache.delete(claim)


def _deliver(branch: IntegrationBranch) -> IntegrationBranch:
    project = branch.project

    try:
        repo = workspace_of(project, max_age=0)
        commits_ensure(project=project, repo=repo, commits=[branch.head])
        pushed = _push(branch, repo)
        pull_request = _pull_request(branch) if project.delivery == DeliveryMode.PULL_REQUEST \
            else None
    except DeliveryFailed as error:
        _failed(branch, error.message)
        return branch
    except (ApplicationError, WorkspaceError) as error:
        _failed(branch, _failure_words(branch, error.message))
        return branch
    with transaction.atomic():
        fields: dict[str, Any] = {"delivered_commit": pushed, "failure": "", "tries": 0,
                                  "next_try_at": None, "updated_at": timezone.now()}
        fields["status"] = DeliveryStatus.DELIVERED if pushed == branch.head \
            else DeliveryStatus.PENDING
        if pull_request is not None:
            fields.update(pull_request_number=pull_request.number,
                          pull_request_url=pull_request.url,
                          pull_request_state=pull_request.state,
                          pull_request_checked_at=timezone.now())
        IntegrationBranch.objects.filter(pk=branch.pk).update(**fields)
        if pushed != branch.delivered_commit:
            audit_record(organization=project.organization, actor=SYSTEM,
                         type="delivery.pushed", target=project, target_label=project.key,
                         project_id=project.pk,
                         data={"branch": branch.name, "commit": pushed,
                               **({"pull_request": pull_request.url} if pull_request else {})})
    branch.refresh_from_db()
    if pull_request is not None and pull_request.state == PullRequestState.MERGED:
        branch_pull_request_state(branch=branch, state=PullRequestState.MERGED)
    return branch


def _push(branch: IntegrationBranch, repo: Path) -> str:
    """Push the head without force; merge in commits the team pushed to the branch first."""
    project = branch.project
    head = branch.head
    with remote_access(project) as access:
        remote = _remote_tip(repo, branch.name)
        if remote and _contains(repo, remote, head):
            return head  # delivered already (perhaps with the team's commits on top)
        if remote and not _contains(repo, head, remote):
            head = _take_in(branch, repo, remote)
        result = git(["push", "--quiet", "--porcelain", "origin",
                      f"{head}:refs/heads/{branch.name}"], cwd=repo, check=False,
                     env=access.env, timeout=PUSH_TIMEOUT)
        if result.returncode != 0:
            raise DeliveryFailed(_failure_words(branch, result.stdout + result.stderr))
    git(["update-ref", f"refs/remotes/origin/{branch.name}", head], cwd=repo)
    return head


def _contains(repo: Path, tip: str, commit: str) -> bool:
    """Whether `commit` is `tip` or one of its ancestors."""
    return tip == commit or bool(is_ancestor(repo, commit, tip))


def _remote_tip(repo: Path, name: str) -> str:
    return git(["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{name}^{{commit}}"],
               cwd=repo, check=False).stdout.strip()


def _take_in(branch: IntegrationBranch, repo: Path, remote: str) -> str:
    """The team pushed to HAAO's branch: merge their commits in (never drop them)."""
    merged = merge_commits(repo=repo, target=branch.head, source=remote,
                           message=f"Merge the remote's {branch.name} into HAAO's\n")
    if not merged.merged:
        raise DeliveryFailed(
            f"The branch {branch.name} on the remote has commits HAAO did not write, and they "
            f"conflict with HAAO's ({', '.join(merged.conflicts)}). HAAO never overwrites "
            "them: merge or delete the remote branch, then retry the delivery.")
    pack_save(project=branch.project, repo=repo, commit=merged.commit,
              prerequisites=[branch.head, remote])
    if not branch_advance(branch=branch, old=branch.head, new=merged.commit):
        raise DeliveryFailed(f"The branch {branch.name} moved while it was being delivered; "
                             "it will be tried again.")
    return merged.commit


def _failure_words(branch: IntegrationBranch, output: str) -> str:
    """Why a fetch or push failed, in words an admin can act on; never the token."""
    text = redact_userinfo(output).strip()
    token = getattr(branch.project, "token", None)
    secret = token.reveal() if token else ""
    if secret:
        text = text.replace(secret, "***")
    lower = text.lower()
    if "rejected" in lower or "non-fast-forward" in lower or "fetch first" in lower:
        why = (f"the remote refused the push to {branch.name} (someone pushed to it meanwhile, "
               "or the branch is protected)")
    elif _HTTP_REFUSED.search(lower) or any(
            sign in lower for sign in ("authentication", "permission denied",
                                       "could not read username", "access denied")):
        why = ("the remote refused HAAO's credentials: check that the token or deploy key "
               "may write to the repository")
    elif any(sign in lower for sign in ("could not resolve", "connection refused", "timed out",
                                        "failed to connect", "couldn't connect",
                                        "could not connect", "unable to access")):
        why = "the remote could not be reached"
    else:
        why = "git push failed"
    return f"Delivery failed: {why}. {text[-500:]}".strip()


def _pull_request(branch: IntegrationBranch) -> Any:
    """Open the branch's pull request, or update its description."""

    project = branch.project
    forge = _forge(project)
    title, body = pull_request_text(branch)
    try:
        # A merged or closed pull request takes no more commits: later work gets a new one.
        if branch.pull_request_number and branch.pull_request_state in ("", "open"):
            return forge.pull_request_update(number=branch.pull_request_number, title=title,
                                             body=body)
        return forge.pull_request_open(head_branch=branch.name,
                                       base_branch=project.default_branch, title=title,
                                       body=body)
    except ForgeError as error:
        raise DeliveryFailed(f"The branch was pushed, but the pull request could not be "
                             f"opened or updated: {error.message}") from None


def branch_pull_request_poll(*, branch_id: Any) -> None:
    """Ask the forge how the branch's pull request stands (the fallback for webhooks)."""

    branch = (IntegrationBranch.objects.select_related("project__organization", "requirement")
              .filter(pk=branch_id).first())
    if branch is None or not branch.pull_request_number:
        return
    try:
        pull_request = _forge(branch.project).pull_request_get(
            number=branch.pull_request_number)
    except ForgeError as error:
        logger.warning("Polling %s's pull request failed: %s", branch.name, error.message)
        IntegrationBranch.objects.filter(pk=branch.pk).update(
            pull_request_checked_at=timezone.now())
        return
    branch_pull_request_state(branch=branch, state=pull_request.state)


def _forge(project: Project) -> Any:

    return forge_for(kind=project.forge, api_url=project.forge_api_url,
                     repository_path=_repository_path(project),
                     token=project.token.reveal() if project.token else "",
                     organization_id=project.organization_id)


def _repository_path(project: Project) -> str:

    found = forge_defaults(project.repository)
    return found[2] if found else ""


def pull_request_text(branch: IntegrationBranch) -> tuple[str, str]:
    """The pull request's title and body: the requirement, each ticket with its checks and
    audit, the cost, and links back to HAAO."""

    project = branch.project
    requirement = branch.requirement
    base_url = settings.BASE_URL
    org = project.organization.slug
    if requirement is not None:
        title = f"{requirement.key}: {requirement.title}"[:250]
        lines = [f"**Requirement [{requirement.key}]({base_url}/o/{org}/requirements/"
                 f"{requirement.key}/)** — {requirement.title}", "",
                 _quote(requirement.text), ""]
        if requirement.issue_number:
            lines[1:1] = ["", f"Closes #{requirement.issue_number}"]
    else:
        title = f"HAAO: accepted work of {project.key}"
        lines = [f"Accepted tickets of project {project.key} in HAAO.", ""]
    lines.append("| ticket | Definition of Done | audit | cost |")
    lines.append("|---|---|---|---|")
    carried = branch_tickets(branch)
    costs = ticket_costs(organization=project.organization,
                         tickets=[ticket for ticket, _, _ in carried])
    for ticket, attempt, audit in carried:
        checks = ", ".join(f"{'✅' if c.passed else '❌'} {c.name}" for c in attempt.checks.all()) \
            if attempt else "—"
        lines.append(f"| [{ticket.key}]({base_url}/o/{org}/tickets/{ticket.key}/) "
                     f"{_cell(ticket.title)} | {_cell(checks)} | {_cell(audit)} | "
                     f"${costs.get(ticket.pk, NO_COST).cost:.4f} |")
    lines += ["", f"Delivered by HAAO from commit `{branch.head[:12]}`. Every ticket passed "
              "its checks in a sandbox and was accepted by a product owner."]
    return title, "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.strip().splitlines()[:40])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]


def _failed(branch: IntegrationBranch, reason: str) -> None:
    tries = branch.tries + 1
    with transaction.atomic():
        IntegrationBranch.objects.filter(pk=branch.pk).update(
            status=DeliveryStatus.FAILED, failure=reason[:2000], tries=tries,
            next_try_at=timezone.now() + retry_delay(tries), updated_at=timezone.now())
        audit_record(organization=branch.project.organization, actor=SYSTEM,
                     type="delivery.failed", target=branch.project,
                     target_label=branch.project.key, project_id=branch.project_id,
                     data={"branch": branch.name, "reason": reason[:500], "tries": tries})
    logger.warning("Delivery of %s failed: %s", branch.name, reason)


def branch_delivery_retry(*, branch: IntegrationBranch, actor: User) -> IntegrationBranch:
    """An admin asks for the delivery now, instead of waiting for the next try."""

    if branch.project.delivery == DeliveryMode.NONE:
        raise ApplicationError("This project keeps its work in HAAO (delivery: none); there "
                               "is nothing to deliver.", code="delivery_off")
    with transaction.atomic():
        IntegrationBranch.objects.filter(pk=branch.pk).update(next_try_at=timezone.now())
        audit_record(organization=branch.project.organization, actor=Actor.of(actor),
                     type="delivery.retried", target=branch.project,
                     target_label=branch.project.key, project_id=branch.project_id,
                     data={"branch": branch.name})
        enqueue.deliver(branch_id=branch.pk, organization=branch.project.organization)
    return branch


def branch_pull_request_state(*, branch: IntegrationBranch, state: str) -> None:
    """Record what the forge says of the branch's pull request; a merged one delivers the
    requirement (its final state)."""
    if state not in PullRequestState.values:
        raise ApplicationError(f"Unknown pull request state {state!r}.", code="invalid_state")
    with transaction.atomic():
        changed = IntegrationBranch.objects.filter(pk=branch.pk).exclude(
            pull_request_state=state).update(pull_request_state=state,
                                             pull_request_checked_at=timezone.now())
        if not changed:
            IntegrationBranch.objects.filter(pk=branch.pk).update(
                pull_request_checked_at=timezone.now())
            return
        audit_record(organization=branch.project.organization, actor=SYSTEM,
                     type="delivery.pull_request", target=branch.project,
                     target_label=branch.project.key, project_id=branch.project_id,
                     data={"branch": branch.name, "state": state,
                           "pull_request": branch.pull_request_url})
        requirement = branch.requirement
        if state == PullRequestState.MERGED and requirement is not None:
            requirement_deliver(requirement=requirement, branch=branch.name,
                                pull_request=branch.pull_request_url,
                                commit=branch.delivered_commit)

"""Integration branches: which one a ticket's work goes into, and moving it safely.

The branch's `head` in the database is its record. It moves only by compare-and-set, so two
workers on different machines merging at once cannot lose each other's work: the loser sees
the new head and merges again on top of it.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.delivery.packs import commits_ensure, pack_save, pack_store
from agents.models import DeliveryStatus, IntegrationBranch
from agents.workspaces.attempts import (
    COMMIT_NOT_HERE,
    MergeResult,
    attempt_branch,
    merge_commits,
)
from agents.workspaces.git import WorkspaceError, git
from agents.workspaces.store import is_ancestor, keep
from haao.audit import SYSTEM, audit_record
from haao.rows import one_or_none
from tickets.models import Attempt, DeliveryMode, Project, Requirement, Ticket
from tickets.services.engine import ticket_merged

logger = logging.getLogger(__name__)

# How many times a merge retries when another worker moved the branch meanwhile.
ADVANCE_TRIES = 8


def branch_name_for(ticket: Ticket) -> tuple[str, Requirement | None]:
    """The branch a ticket's accepted work goes into: its requirement's pull-request branch,
    or the project's integration branch."""
    project = ticket.project
    if project.delivery == DeliveryMode.PULL_REQUEST and ticket.requirement_id:
        requirement = ticket.requirement
        assert requirement is not None
        return f"haao/{requirement.key}", requirement
    return project.integration_branch, None


def upstream_tip(repo: Path, project: Project) -> str:
    """The default branch's commit as last fetched from the team's remote."""
    return git(["rev-parse", "--verify", f"refs/heads/{project.default_branch}^{{commit}}"],
               cwd=repo).stdout.strip()


def _remote_tip(repo: Path, name: str) -> str:
    return git(["rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{name}^{{commit}}"],
               cwd=repo, check=False).stdout.strip()


def work_base(*, project: Project, repo: Path) -> str:
    """The commit new work of the project starts from: its integration branch's head, or,
    where each requirement gets its own pull request, the team's default branch."""
    if project.delivery != DeliveryMode.PULL_REQUEST:
        branch = IntegrationBranch.objects.filter(project=project,
                                                  name=project.integration_branch).first()
        if branch is not None:
            return branch_follow_upstream(branch=branch, repo=repo).head
    return upstream_tip(repo, project)


def integration_branch_for(*, ticket: Ticket, repo: Path) -> IntegrationBranch:
    """The ticket's integration branch, created from the remote's copy of it (a branch HAAO
    delivered before) or from the current default branch."""
    project = ticket.project
    name, requirement = branch_name_for(ticket)
    branch = one_or_none(IntegrationBranch.objects.all(), project=project, name=name)
    if branch is not None:
        branch.project = project  # the caller's, already read
        return branch
    start = _remote_tip(repo, name) or upstream_tip(repo, project)
    try:
        with transaction.atomic():
            branch = IntegrationBranch.objects.create(
                organization_id=project.organization_id, project=project, name=name,
                requirement=requirement, base=start, head=start)
            audit_record(organization=project.organization, actor=SYSTEM,
                         type="integration_branch.created", target=project,
                         target_label=project.key, project_id=project.pk,
                         data={"branch": name, "base": start,
                               **({"requirement": requirement.key} if requirement else {})})
    except IntegrityError:  # another worker created it first
        branch = IntegrationBranch.objects.get(project=project, name=name)
    return branch


def branch_advance(*, branch: IntegrationBranch, old: str, new: str, base: str = "") -> bool:
    """Compare-and-set the branch's head; with `base`, it only follows upstream (no work of
    HAAO's on it yet), so there is nothing new to deliver."""
    fields: dict[str, object] = {"head": new, "updated_at": timezone.now()}
    if base:
        fields["base"] = base
    else:
        fields["status"] = (DeliveryStatus.LOCAL if branch.project.delivery == DeliveryMode.NONE
                            else DeliveryStatus.PENDING)
    moved = IntegrationBranch.objects.filter(pk=branch.pk, head=old).update(**fields) == 1
    if moved:
        for name, value in fields.items():
            setattr(branch, name, value)
    return moved


def branch_follow_upstream(*, branch: IntegrationBranch, repo: Path) -> IntegrationBranch:
    """Bring the team's newest default branch into the integration branch, so attempts start
    from current upstream: a branch without HAAO's work moves to it; one with work gets a
    merge commit when the two merge cleanly (else it stays, and the pull request shows it)."""
    project = branch.project
    upstream = f"refs/heads/{project.default_branch}"
    for _ in range(ADVANCE_TRIES):
        # Most calls find nothing new upstream: one git process says so, by the ref's name.
        # The head is brought in only when git says it is not here.
        known = is_ancestor(repo, upstream, branch.head)
        if known is None:
            commits_ensure(project=project, repo=repo, commits=[branch.head])
            known = is_ancestor(repo, upstream, branch.head)
        if known:
            return branch
        tip = upstream_tip(repo, project)  # a missing default branch is named here
        if branch.head == branch.base:
            if branch_advance(branch=branch, old=branch.head, new=tip, base=tip):
                return branch
        else:
            merged = merge_commits(
                repo=repo, target=branch.head, source=tip, source_unmerged=True,
                message=f"Merge {project.default_branch} into {branch.name}\n")
            if not merged.merged:
                return branch
            pack_save(project=project, repo=repo, commit=merged.commit,
                      prerequisites=[branch.head, tip])
            if branch_advance(branch=branch, old=branch.head, new=merged.commit):
                return branch
        branch.refresh_from_db()
    raise WorkspaceError(f"The branch {branch.name} kept moving; try again.",
                         code="branch_busy")


def ticket_commit(*, attempt: Attempt, repo: Path) -> str:
    """The commit of an attempt whose checks passed (older attempts: their local branch)."""
    if attempt.commit:
        return attempt.commit

    branch = attempt_branch(attempt.ticket.key, attempt.number)
    return git(["rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}"],
               cwd=repo).stdout.strip()


def branch_merge_ticket(*, ticket: Ticket, attempt: Attempt, repo: Path,
                        message: str) -> tuple[IntegrationBranch, MergeResult]:
    """Merge an accepted attempt into the ticket's integration branch, exactly once: the merge
    commit is stored, the branch moved by compare-and-set and the ticket marked merged in one
    transaction; a conflict changes nothing."""
    project = ticket.project
    source = ticket_commit(attempt=attempt, repo=repo)
    branch = integration_branch_for(ticket=ticket, repo=repo)
    for _ in range(ADVANCE_TRIES):
        result = _merge_here(project=project, repo=repo, target=branch.head, source=source,
                             message=message)
        if not result.merged:
            return branch, result
        if not result.up_to_date:
            pack_store(project=project, repo=repo, commit=result.commit,
                       prerequisites=[branch.head, source])
        with transaction.atomic():
            if not result.up_to_date and not branch_advance(branch=branch, old=branch.head,
                                                            new=result.commit):
                branch.refresh_from_db()
                continue
            # Registered before the merge's own reactions, so the local branch is set before
            # anyone hears of the merge.
            transaction.on_commit(functools.partial(
                _name_locally, repo=repo, branch=branch.name, commit=result.commit))
            if not ticket_merged(ticket=ticket, commit=result.commit, branch=branch.name):
                # Another delivery recorded the merge first: leave the branch as it was.
                transaction.set_rollback(True)
                branch.refresh_from_db()
                return branch, result
        return branch, result
    raise WorkspaceError(f"The branch {branch.name} kept moving; the merge will be retried.",
                         code="branch_busy")


def _merge_here(*, project: Project, repo: Path, target: str, source: str,
                message: str) -> MergeResult:
    """An accepted attempt's commit merged into the branch in this machine's repository,
    bringing the two commits in from HAAO's store only when the merge says this repository
    lacks one (most often it has both). The commit is never in the branch already: its
    ticket would be merged, and its step would not have come this far."""
    def merge() -> MergeResult:
        return merge_commits(repo=repo, target=target, source=source, message=message,
                             source_unmerged=True)

    try:
        return merge()
    except WorkspaceError as error:
        if error.code != COMMIT_NOT_HERE:
            raise
    commits_ensure(project=project, repo=repo, commits=[target, source])
    return merge()


def _name_locally(*, repo: Path, branch: str, commit: str) -> None:
    """After the merge commits: keep its commit in this cache and point a local branch of the
    same name at it, in one ref transaction, so a person in this worker's workspace can
    `git log` it. The database stays the record and the store has the commit, so a failure
    here (another merge on this machine took the ref meanwhile) loses nothing."""
    try:
        keep(repo, [commit], refs={f"refs/heads/{branch}": commit})
    except WorkspaceError as error:
        logger.info("The local branch %s was left as it was: %s", branch, error.message)

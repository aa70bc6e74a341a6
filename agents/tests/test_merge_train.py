"""A project's merges run as a train: one worker merges at a time, and a merge step that
finds the project held leaves its ticket to the worker holding it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from agents.delivery.packs import pack_save
from agents.engine import steps
from agents.tests.repos import commit_on, upstream_repo
from agents.workspaces.git import git
from agents.workspaces.remote import workspace_of
from tests.factories import TicketFactory
from tickets.models import Attempt, AttemptOutcome, Project, Ticket, TicketStatus

pytestmark = [pytest.mark.django_db]


def _accepted(cast: Any, *, commit: str, accepted_seconds_ago: int) -> Ticket:
    ticket = TicketFactory(requirement__project=cast.project, status=TicketStatus.ACCEPTED,
                           status_changed_at=timezone.now()
                           - timedelta(seconds=accepted_seconds_ago))
    Attempt.objects.create(organization=cast.org, ticket=ticket, number=1,
                           outcome=AttemptOutcome.PASSED, commit=commit)
    return ticket


def test_a_merge_step_that_finds_its_project_held_leaves_its_ticket_to_the_holder(
        cast: Any, tmp_path: Path, settings: Any) -> None:
    upstream = upstream_repo(tmp_path)
    Project.objects.filter(pk=cast.project.pk).update(repository=str(upstream), delivery="none")
    cast.project.refresh_from_db()
    settings.HAAO_WORKSPACE_ROOT = tmp_path / "machine"
    repo = workspace_of(cast.project, max_age=0)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    commits = [commit_on(repo, base, "app.py", "VALUE = 2\n"),
               commit_on(repo, base, "README.md", "readme, changed\n")]
    for commit in commits:
        pack_save(project=cast.project, repo=repo, commit=commit, prerequisites=[base])
    first = _accepted(cast, commit=commits[0], accepted_seconds_ago=20)
    second = _accepted(cast, commit=commits[1], accepted_seconds_ago=10)
    held = f"haao:merge-train:{cast.project.pk}"

    cache.add(held, "another worker")
    try:
        steps.merge_step(ticket_id=second.pk)
        assert not Ticket.objects.get(pk=second.pk).merged_commit  # left to the holder
    finally:
        cache.delete(held)
    # The first's step holds the project now: it merges its ticket, then the one waiting.
    steps.merge_step(ticket_id=first.pk)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.merged_commit and second.merged_commit
    # One after the other, in the order they were accepted: no merge raced another.
    parents = git(["rev-list", "--parents", "-n", "1", second.merged_commit],
                  cwd=repo).stdout.split()
    assert parents[1:] == [first.merged_commit, commits[1]]
    assert git(["show", f"{second.merged_commit}:app.py"], cwd=repo).stdout == "VALUE = 2\n"
    assert git(["show", f"{second.merged_commit}:README.md"],
               cwd=repo).stdout == "readme, changed\n"
    assert cache.get(held) is None  # let go

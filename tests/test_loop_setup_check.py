"""The setup check starts on its own: a new project, or a changed test command, is checked by
a real worker after the change commits, before anyone submits a requirement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.workspaces.git import git
from agents.workspaces.samples import git_checkout
from haao.models import AuditEvent
from tests.loop import Processes, wait_for
from tests.samples import SAMPLE_PROJECT
from tickets import services
from tickets.models import Project

pytestmark = [pytest.mark.django_db(transaction=True)]

PYTEST = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]


def report_of(project: Project, status: str) -> Any:
    def check() -> dict[str, Any] | None:
        report = Project.objects.get(pk=project.pk).setup_report
        return report if report.get("status") == status else None
    return check


def test_a_new_project_and_a_changed_test_command_are_checked_by_a_worker(
        cast: Any, tmp_path: Path, settings: Any, processes: Processes) -> None:
    repos = tmp_path / "repos"
    repos.mkdir()
    repo = git_checkout(SAMPLE_PROJECT, repos / "invoice-calc")
    settings.HAAO_LOCAL_REPOSITORIES = [str(repos)]
    processes.start_worker(env={"HAAO_LOCAL_REPOSITORIES": str(repos)})
    head = git(["rev-parse", "HEAD"], cwd=repo).stdout.strip()

    project = services.project_create(
        organization=cast.org, key="INV", name="Invoice calc", actor=cast.admin,
        repository=str(repo), values={"default_branch": "main", "test_command": PYTEST})

    failing = wait_for(report_of(project, "tests_fail_on_base"), timeout=120,
                       what="the setup check of the new project", processes=processes)
    assert failing["commit"] == head and failing["failed"] == 1
    assert f"already fails on main at {head[:7]} (1 failed)" in failing["message"]

    services.project_update(project=project, actor=cast.admin,
                            changes={"test_command": [*PYTEST, "-k", "not half_a_cent"]})

    passing = wait_for(report_of(project, "ok"), timeout=120,
                       what="the setup check after the change", processes=processes)
    assert passing["commit"] == head
    events = AuditEvent.objects.for_org(cast.org).filter(type="project.setup_checked")
    assert [e.data["status"] for e in events.order_by("seq")] == ["tests_fail_on_base", "ok"]
    assert {e.actor_type for e in events} == {"system"}

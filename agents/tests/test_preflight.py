"""The setup check: the project's test command on its default branch, before any model runs."""

from __future__ import annotations

import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from agents import tasks
from agents.preflight import SetupStatus, setup_check
from agents.sandbox import sandbox_available
from agents.workspaces.git import git
from agents.workspaces.remote import workspace_of
from agents.workspaces.samples import git_checkout
from haao.models import AuditEvent
from tests.factories import RequirementFactory, TicketFactory
from tests.fixtures import last_event, token_client
from tests.samples import SAMPLE_PROJECT
from tickets import services
from tickets.models import Project
from tickets.signals import project_setup_changed

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here"),
]

# The sample project's tests: one of them (half a cent) fails on its main branch.
PYTEST = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
PASSING = [*PYTEST, "-k", "not half_a_cent"]


@pytest.fixture
def repos(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "repos"
    root.mkdir()
    settings.HAAO_LOCAL_REPOSITORIES = [str(root)]
    settings.HAAO_WORKSPACE_ROOT = tmp_path / "workspaces"
    settings.DATA_DIR = tmp_path / "data"
    return root


@pytest.fixture
def sample(repos: Path) -> Path:
    return git_checkout(SAMPLE_PROJECT, repos / "invoice-calc")


def project_at(cast: Any, url: str, **fields: Any) -> Project:
    Project.objects.filter(pk=cast.project.pk).update(repository=url, default_branch="main",
                                                      **fields)
    return Project.objects.get(pk=cast.project.pk)


def head_of(repo: Path) -> str:
    return git(["rev-parse", "HEAD"], cwd=repo).stdout.strip()


def stored(project: Project) -> dict[str, Any]:
    project.refresh_from_db()
    return dict(project.setup_report)


def test_a_project_whose_tests_pass_on_main_is_ready(cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=PASSING)

    report = setup_check(project=project, actor=cast.admin)

    assert report.status == SetupStatus.OK and report.ok, report.message + report.output_tail
    assert report.commit == head_of(sample)
    assert report.message == (f"Ready: the test command `{shlex.join(PASSING)}` passes on main "
                              f"at {head_of(sample)[:7]}.")
    assert "passed" in report.output_tail
    assert stored(project)["status"] == "ok"
    assert stored(project)["commit"] == head_of(sample)
    event = last_event(cast.org, "project.setup_checked")
    assert event.actor_user_id == cast.admin.pk
    assert event.data == {"status": "ok", "commit": head_of(sample), "branch": "main",
                          "message": report.message}


def test_tests_that_already_fail_on_main_are_named_with_the_commit(
        cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=PYTEST)

    report = setup_check(project=project)

    short = head_of(sample)[:7]
    assert report.status == SetupStatus.TESTS_FAIL_ON_BASE
    assert report.failed == 1
    assert report.message.startswith(f"The test command `{' '.join(PYTEST)}` already fails on "
                                     f"main at {short} (1 failed), before any ticket changes "
                                     "a line: only a ticket that fixes these failures can "
                                     "pass")
    assert "half_a_cent" in report.output_tail
    assert stored(project)["status"] == "tests_fail_on_base"
    assert last_event(cast.org, "project.setup_checked").data["status"] == "tests_fail_on_base"


def test_a_program_missing_from_the_sandbox_is_a_machine_problem(
        cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=["go", "test", "./..."])

    report = setup_check(project=project)

    assert report.status == SetupStatus.COMMAND_NOT_FOUND
    assert report.message.startswith("`go` is not found inside the sandbox")
    assert "HAAO_CHECK_TOOLCHAIN" in report.message
    assert report.commit == head_of(sample)


def test_a_failing_setup_command_is_reported_and_leaves_no_environment(
        cast: Any, sample: Path, tmp_path: Path) -> None:
    project = project_at(cast, str(sample), test_command=PASSING, setup_command=[
        sys.executable, "-c", "raise SystemExit('no package index reachable')"])

    report = setup_check(project=project)

    assert report.status == SetupStatus.SETUP_FAILED
    assert report.message.startswith("The project's setup command")
    assert "correct the setup command in the project's settings" in report.message
    assert "no package index reachable" in report.output_tail
    assert report.commit == head_of(sample)
    assert not (tmp_path / "data" / "environments" / str(project.pk) / report.commit).exists()
    assert stored(project)["status"] == "setup_failed"


def test_the_setup_command_installs_into_the_project_s_virtualenv_first(
        cast: Any, sample: Path) -> None:
    """pip in the setup command is the virtualenv's: the environment is ready for the tests."""
    project = project_at(cast, str(sample), test_command=[
        "python", "-c", "import sys; assert sys.prefix == '/env/venv', sys.prefix"],
        setup_command=["pip", "--version"])

    report = setup_check(project=project)

    assert report.status == SetupStatus.OK, report.message + report.output_tail


def test_without_a_test_command_the_report_asks_for_one(cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=[])

    report = setup_check(project=project)

    assert report.status == SetupStatus.NO_TEST_COMMAND
    assert "set one in the project's settings" in report.message


@pytest.mark.parametrize(("url", "branch", "status", "words"), [
    ("", "main", SetupStatus.NO_REPOSITORY, "The project has no repository URL yet"),
    ("{repos}/nothing-here.git", "main", SetupStatus.UNREACHABLE, "The repository was not found"),
    ("{sample}", "develop", SetupStatus.BRANCH_MISSING,
     "Connected, but the default branch 'develop' does not exist. Branches that exist: main."),
    ("/etc", "main", SetupStatus.UNREACHABLE, "HAAO_LOCAL_REPOSITORIES"),
])
def test_bad_repositories_get_a_clear_report_and_nothing_else(
        cast: Any, repos: Path, sample: Path, tmp_path: Path, url: str, branch: str,
        status: SetupStatus, words: str) -> None:
    project = project_at(cast, url.format(repos=repos, sample=sample), test_command=PASSING)
    Project.objects.filter(pk=project.pk).update(default_branch=branch)
    project.refresh_from_db()

    report = setup_check(project=project, actor=cast.admin)

    assert report.status == status
    assert words in report.message
    assert (report.commit, report.output_tail) == ("", "")
    assert stored(project) == {**stored(project), "status": str(status), "commit": ""}
    assert last_event(cast.org, "project.setup_checked").data["status"] == str(status)
    assert not (tmp_path / "workspaces" / str(project.pk)).exists()
    assert not (tmp_path / "data" / "environments").exists()


# --- Where a person starts it and reads it ----------------------------------------------------

API = "/api/v1/orgs/acme/projects/PAY/"
SETTINGS = "/o/acme/projects/PAY/settings/"


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_api_runs_the_check_and_the_project_carries_its_report(
        cast: Any, sample: Path) -> None:
    project_at(cast, str(sample), test_command=PYTEST)
    client = token_client(cast.org, cast.admin, ["admin"])

    response = client.post(f"{API}setup-check/")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["commit"], body["failed"]) == (
        "tests_fail_on_base", head_of(sample), 1)
    assert client.get(API).json()["setup_report"]["message"] == body["message"]


def test_the_api_check_needs_an_admin_token_and_role(cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=PASSING)
    url = f"{API}setup-check/"
    assert token_client(cast.org, cast.admin, ["write"]).post(url).status_code == 403
    assert token_client(cast.org, cast.member, ["admin"]).post(url).status_code == 403
    assert token_client(cast.other_org, cast.outsider, ["admin"]).post(url).status_code == 404
    assert stored(project) == {}
    assert not AuditEvent.objects.filter(type="project.setup_checked").exists()


def test_the_schema_describes_the_setup_check(cast: Any) -> None:
    schema = token_client(cast.org, cast.admin, ["admin"]).get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "projects_setup_check" in text and "tests_fail_on_base" in text


def test_check_setup_on_the_settings_page_and_the_banner_on_the_project_page(
        cast: Any, sample: Path) -> None:
    project_at(cast, str(sample), test_command=PYTEST)
    client = browser(cast.admin)
    assert 'data-testid="setup-banner"' not in client.get("/o/acme/projects/PAY/").content.decode()

    assert client.post(f"{SETTINGS}setup-check/").status_code == 302

    page = client.get(SETTINGS).content.decode()
    short = head_of(sample)[:7]
    assert 'data-status="tests_fail_on_base"' in page
    assert f"already fails on main at {short} (1 failed)" in page
    assert "half_a_cent" in page  # the output's tail
    banner = client.get("/o/acme/projects/PAY/").content.decode()
    assert 'data-testid="setup-banner"' in banner
    assert f"already fails on main at {short}" in banner


def test_a_member_cannot_start_a_check_from_the_portal(cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=PASSING)
    assert browser(cast.member).post(f"{SETTINGS}setup-check/").status_code == 403
    assert stored(project) == {}


# --- Started on its own after a project's setup changes ----------------------------------------

def test_creating_a_project_or_changing_its_setup_schedules_a_check_after_commit(
        cast: Any, sample: Path, django_capture_on_commit_callbacks: Any) -> None:
    sent: list[Any] = []

    def heard(*, project_id: Any, **_: Any) -> None:
        sent.append(project_id)

    project_setup_changed.connect(heard)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            created = services.project_create(
                organization=cast.org, key="NEW", name="New", actor=cast.admin,
                repository=str(sample), values={"test_command": PASSING})
        assert sent == [created.pk]
        with django_capture_on_commit_callbacks(execute=True):
            services.project_update(project=created, actor=cast.admin,
                                    changes={"description": "words only"})
        assert sent == [created.pk]  # a description does not change what the tests need
        Project.objects.filter(pk=created.pk).update(setup_report={"status": "ok"})
        with django_capture_on_commit_callbacks(execute=True):
            services.project_update(project=created, actor=cast.admin,
                                    changes={"test_command": PYTEST})
        assert sent == [created.pk, created.pk]
        assert stored(created) == {}  # the old report spoke of another command
    finally:
        project_setup_changed.disconnect(heard)


def test_the_task_checks_a_project_and_skips_one_that_is_gone(cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=PASSING)

    tasks.setup_check.apply(kwargs={"project_id": str(project.pk)}).get()
    tasks.setup_check.apply(kwargs={"project_id": str(uuid.uuid4())}).get()

    assert stored(project)["status"] == "ok"
    assert last_event(cast.org, "project.setup_checked").data["status"] == "ok"


# --- Gate 1 --------------------------------------------------------------------------------------

def test_gate_1_warns_while_the_tests_fail_at_the_commit_the_tickets_start_from(
        cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=PYTEST)
    services.project_grant_set(organization=cast.org, project=project, user=cast.product_owner,
                               grants={"approve"}, actor=cast.admin)
    ticket = TicketFactory(requirement=RequirementFactory(project=project))
    page_url = f"/o/acme/requirements/{ticket.requirement.key}/"
    client = browser(cast.product_owner)
    assert 'data-testid="base-failure"' not in client.get(page_url).content.decode()

    setup_check(project=project)

    page = client.get(page_url).content.decode()
    assert 'data-testid="base-failure"' in page
    assert f"already fails on main at <span class=\"font-mono\" title=\"{head_of(sample)}\">" \
           f"{head_of(sample)[:7]}</span> (1 failed)" in page
    assert shlex.join(PYTEST) in page  # the failing check, by its command
    failing = "tests/test_totals.py::test_total_rounds_half_a_cent_up"
    assert f'Failing: <code class="font-mono">{failing}</code>' in page
    assert 'id="approve-button"' in page  # a warning, not a lock: the person decides
    api = token_client(cast.org, cast.product_owner, ["read"])
    api_url = f"/api/v1/orgs/acme/requirements/{ticket.requirement.key}/"
    warned = api.get(api_url).json()["base_failure"]
    assert (warned["status"], warned["commit"], warned["failed_tests"]) == (
        "tests_fail_on_base", head_of(sample), [failing])

    # The team fixes main: once HAAO has fetched it, the old report no longer speaks of it.
    (sample / "NOTES.md").write_text("fixed upstream\n")
    git(["add", "NOTES.md"], cwd=sample)
    git(["-c", "user.name=Dev", "-c", "user.email=dev@example.test", "commit", "-q", "-m",
         "fix"], cwd=sample)
    workspace_of(project, max_age=0)
    assert 'data-testid="base-failure"' not in client.get(page_url).content.decode()
    assert api.get(api_url).json()["base_failure"] is None


def test_a_check_of_settings_changed_while_it_ran_stores_nothing(cast: Any, sample: Path) -> None:
    project = project_at(cast, str(sample), test_command=PYTEST)
    as_read = Project.objects.get(pk=project.pk)  # what a slow check started from
    services.project_update(project=project, actor=cast.admin,
                            changes={"test_command": ["python", "-m", "pytest", "-x"]})

    report = setup_check(project=as_read)

    assert report.status == "tests_fail_on_base"  # it ran, about the old command
    assert stored(project) == {}  # the change's own check will speak of the new one
    assert not AuditEvent.objects.filter(type="project.setup_checked").exists()

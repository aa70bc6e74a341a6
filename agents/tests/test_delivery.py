"""Delivering HAAO's branch to a real git server on 127.0.0.1: what the team sees in their
repository, and what an admin sees when the push or the forge fails."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from agents.delivery.packs import pack_save
from agents.delivery.services import branch_deliver, branch_delivery_retry
from agents.models import DeliveryStatus, IntegrationBranch, PullRequestState
from agents.workspaces.checkouts import checkout_at
from agents.workspaces.git import git
from agents.workspaces.remote import workspace_of
from haao.crypto import Secret
from tickets.models import DeliveryMode, RepositoryAuth

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("loopback_repositories")]

REPO = "acme/app"


@pytest.fixture
def loopback_repositories(settings: Any, tmp_path: Any) -> None:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    settings.HAAO_WORKSPACE_ROOT = tmp_path / "workspaces"


def _project(cast: Any, server: Any, *, delivery: str = DeliveryMode.BRANCH,
             token: str | None = None) -> Any:
    project = cast.project
    project.repository = server.url_for(REPO)
    project.default_branch = "main"
    project.auth_method = RepositoryAuth.TOKEN
    project.token_username = server.user
    project.token = Secret(server.password if token is None else token)
    project.delivery = delivery
    project.save()
    return project


def _haao_work(cast: Any, project: Any, files: dict[str, str],
               name: str = "haao/integration") -> IntegrationBranch:
    """A branch on which HAAO merged work: a commit on main, stored, the branch row at it."""
    repo = workspace_of(project, max_age=0)
    base = git(["rev-parse", "main"], cwd=repo).stdout.strip()
    with checkout_at(repo=repo, commit=base) as checkout:
        for path, text in files.items():
            (checkout.directory / path).write_text(text)
        checkout.git(["update-index", "--add", "--", *files])
        tree = checkout.git(["write-tree"]).strip()
    commit = git(["commit-tree", tree, "-p", base, "-m", "PAY-1: accepted work"],
                 cwd=repo).stdout.strip()
    pack_save(project=project, repo=repo, commit=commit, prerequisites=[base])
    return IntegrationBranch.objects.create(organization=cast.org, project=project, name=name,
                                            base=base, head=commit,
                                            status=DeliveryStatus.PENDING)


def test_a_branch_is_pushed_and_says_where_it_went(cast: Any, git_http_server: Any) -> None:
    git_http_server.create_repo(REPO, files={"app.py": "VALUE = 1\n"})
    project = _project(cast, git_http_server)
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    delivered = branch_deliver(branch_id=branch.pk)
    assert delivered is not None and delivered.status == DeliveryStatus.DELIVERED
    assert delivered.delivered_commit == branch.head
    assert git_http_server.branch_sha(REPO, "haao/integration") == branch.head
    assert git_http_server.read_file(REPO, branch="haao/integration", path="app.py") == \
        "VALUE = 2\n"
    # The team's default branch is never touched.
    assert git_http_server.read_file(REPO, branch="main", path="app.py") == "VALUE = 1\n"


def test_the_teams_own_commits_on_haaos_branch_are_merged_in_not_overwritten(
        cast: Any, git_http_server: Any) -> None:
    git_http_server.create_repo(REPO, files={"app.py": "VALUE = 1\n", "NOTES.md": "n\n"})
    project = _project(cast, git_http_server)
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    theirs = git_http_server.commit(REPO, branch="haao/integration",
                                    files={"NOTES.md": "a teammate's note\n"})
    delivered = branch_deliver(branch_id=branch.pk)
    assert delivered is not None and delivered.status == DeliveryStatus.DELIVERED
    tip = git_http_server.branch_sha(REPO, "haao/integration")
    repo = git_http_server.repo_path(REPO)
    parents = git(["rev-list", "--parents", "-n", "1", tip], cwd=repo).stdout.split()[1:]
    assert set(parents) == {branch.head, theirs}
    assert git_http_server.read_file(REPO, branch="haao/integration", path="NOTES.md") == \
        "a teammate's note\n"
    assert git_http_server.read_file(REPO, branch="haao/integration", path="app.py") == \
        "VALUE = 2\n"


def test_conflicting_commits_of_the_team_fail_the_delivery_and_stay(
        cast: Any, git_http_server: Any) -> None:
    git_http_server.create_repo(REPO, files={"app.py": "VALUE = 1\n"})
    project = _project(cast, git_http_server)
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    theirs = git_http_server.commit(REPO, branch="haao/integration",
                                    files={"app.py": "VALUE = 3\n"})
    failed = branch_deliver(branch_id=branch.pk)
    assert failed is not None
    failed.refresh_from_db()
    assert failed.status == DeliveryStatus.FAILED
    assert "never overwrites" in failed.failure and "app.py" in failed.failure
    assert failed.next_try_at is not None and failed.next_try_at > timezone.now()
    assert git_http_server.branch_sha(REPO, "haao/integration") == theirs


def test_a_protected_branch_is_a_failure_with_the_reason(cast: Any,
                                                         git_http_server: Any) -> None:
    git_http_server.create_repo(REPO, files={"app.py": "VALUE = 1\n"})
    git_http_server.protect(REPO, "haao/integration")
    project = _project(cast, git_http_server)
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    branch_deliver(branch_id=branch.pk)
    branch.refresh_from_db()
    assert branch.status == DeliveryStatus.FAILED
    assert "refused the push" in branch.failure
    assert branch.tries == 1


def test_a_revoked_token_fails_without_showing_it(cast: Any, git_http_server: Any) -> None:
    git_http_server.create_repo(REPO, files={"app.py": "VALUE = 1\n"})
    project = _project(cast, git_http_server)
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    project.token = Secret("revoked-token-123456")
    project.save()
    branch_deliver(branch_id=branch.pk)
    branch.refresh_from_db()
    assert branch.status == DeliveryStatus.FAILED
    assert "credentials" in branch.failure or "could not" in branch.failure
    assert "revoked-token-123456" not in branch.failure
    assert git_http_server.branch_sha(REPO, "haao/integration") is None


def test_a_server_that_is_down_is_retried_and_then_delivered(cast: Any,
                                                            git_http_server: Any) -> None:
    git_http_server.create_repo(REPO, files={"app.py": "VALUE = 1\n"})
    project = _project(cast, git_http_server)
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    git_http_server.stop()
    branch_deliver(branch_id=branch.pk)
    branch.refresh_from_db()
    assert branch.status == DeliveryStatus.FAILED
    assert "reached" in branch.failure
    first_wait = branch.next_try_at - timezone.now()
    git_http_server.start()
    branch_delivery_retry(branch=branch, actor=cast.admin)  # an admin asks for it now
    branch.refresh_from_db()
    assert branch.next_try_at <= timezone.now()
    branch_deliver(branch_id=branch.pk)  # what the worker does with that request
    branch.refresh_from_db()
    assert branch.status == DeliveryStatus.DELIVERED, branch.failure
    assert first_wait.total_seconds() > 30
    assert git_http_server.branch_sha(REPO, "haao/integration") == branch.head


@pytest.mark.parametrize("forge_fixture", ["fake_github", "fake_gitlab", "fake_gitea"])
def test_a_pull_request_is_opened_once_and_updated(
        cast: Any, request: pytest.FixtureRequest, forge_fixture: str) -> None:
    forge = request.getfixturevalue(forge_fixture)
    server = forge.git
    server.password = forge.token
    project = _project(cast, server, delivery=DeliveryMode.PULL_REQUEST)
    project.forge, project.forge_api_url = forge.kind, forge.api_url
    project.save()
    branch = _haao_work(cast, project, {"README.md": "HAAO was here\n"}, name="haao/PAY-R1")
    delivered = branch_deliver(branch_id=branch.pk)
    assert delivered is not None and delivered.status == DeliveryStatus.DELIVERED, \
        delivered.failure if delivered else ""
    assert delivered.pull_request_state == PullRequestState.OPEN
    [pull] = forge.pulls[forge.repo]
    assert delivered.pull_request_number == pull.number
    assert (pull.head, pull.base) == ("haao/PAY-R1", "main")
    assert "HAAO" in pull.body
    branch_deliver(branch_id=branch.pk)
    assert len(forge.pulls[forge.repo]) == 1
    assert forge.requests[-1].method in ("PATCH", "PUT")


def test_a_deploy_key_delivers_over_ssh_to_a_pinned_host(cast: Any,
                                                         git_ssh_server: Any) -> None:
    from agents.workspaces.remote import deploy_key_generate

    git_ssh_server.create_repo(REPO, files={"app.py": "VALUE = 1\n"})
    project = cast.project
    project.repository = git_ssh_server.url_for(REPO)
    project.default_branch, project.delivery = "main", DeliveryMode.BRANCH
    project.save()
    public_key = deploy_key_generate(project=project, actor=cast.admin)
    git_ssh_server.authorize(public_key)
    project.refresh_from_db()
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    project.refresh_from_db()
    assert project.ssh_known_hosts  # pinned on first contact
    delivered = branch_deliver(branch_id=branch.pk)
    assert delivered is not None and delivered.status == DeliveryStatus.DELIVERED, \
        delivered.failure if delivered else ""
    assert git_ssh_server.branch_sha(REPO, "haao/integration") == branch.head
    assert git_ssh_server.read_file(REPO, branch="haao/integration", path="app.py") == \
        "VALUE = 2\n"


def test_a_forge_that_refuses_the_token_is_a_failure_after_the_push(
        cast: Any, fake_github: Any) -> None:
    server = fake_github.git
    server.password = fake_github.token
    project = _project(cast, server, delivery=DeliveryMode.PULL_REQUEST)
    project.forge, project.forge_api_url = "github", fake_github.api_url
    project.save()
    fake_github.tokens = {"another-token"}
    branch = _haao_work(cast, project, {"README.md": "x\n"}, name="haao/PAY-R2")
    branch_deliver(branch_id=branch.pk)
    branch.refresh_from_db()
    assert branch.status == DeliveryStatus.FAILED
    assert "pull request could not be opened" in branch.failure
    assert fake_github.token not in branch.failure
    assert server.branch_sha(fake_github.repo, "haao/PAY-R2") == branch.head


def test_a_failed_delivery_is_on_the_project_page_and_an_admin_retries_it(
        cast: Any, git_http_server: Any) -> None:
    from django.test import Client

    from haao.models import AuditEvent

    git_http_server.create_repo(REPO, files={"app.py": "VALUE = 1\n"})
    git_http_server.protect(REPO, "haao/integration")
    project = _project(cast, git_http_server)
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    branch_deliver(branch_id=branch.pk)
    page_url = f"/o/acme/projects/{project.key}/"
    admin, member = Client(), Client()
    admin.force_login(cast.admin)
    member.force_login(cast.manager)
    page = admin.get(page_url).content.decode()
    assert "haao/integration" in page and "refused the push" in page and "Deliver now" in page
    assert "Deliver now" not in member.get(page_url).content.decode()
    deliver = f"/o/acme/projects/{project.key}/branches/{branch.pk}/deliver/"
    assert member.post(deliver).status_code == 403
    assert admin.post(deliver).status_code == 302
    assert AuditEvent.objects.filter(organization=cast.org, type="delivery.retried",
                                     actor_user=cast.admin).count() == 1
    outsider = Client()
    outsider.force_login(cast.outsider)
    assert outsider.post(deliver).status_code == 404


def test_work_accepted_after_the_pull_request_was_merged_gets_a_new_one(
        cast: Any, fake_github: Any) -> None:
    server = fake_github.git
    server.password = fake_github.token
    project = _project(cast, server, delivery=DeliveryMode.PULL_REQUEST)
    project.forge, project.forge_api_url = "github", fake_github.api_url
    project.save()
    branch = _haao_work(cast, project, {"README.md": "first\n"}, name="haao/PAY-R3")
    first = branch_deliver(branch_id=branch.pk)
    assert first is not None
    fake_github.merge(first.pull_request_number)
    IntegrationBranch.objects.filter(pk=branch.pk).update(
        pull_request_state=PullRequestState.MERGED)
    # A later ticket of the requirement lands on the branch.
    repo = workspace_of(project, max_age=0)
    with checkout_at(repo=repo, commit=branch.head) as checkout:
        (checkout.directory / "LATER.md").write_text("later\n")
        checkout.git(["update-index", "--add", "--", "LATER.md"])
        tree = checkout.git(["write-tree"]).strip()
    later = git(["commit-tree", tree, "-p", branch.head, "-m", "PAY-2"], cwd=repo).stdout.strip()
    pack_save(project=project, repo=repo, commit=later, prerequisites=[branch.head])
    IntegrationBranch.objects.filter(pk=branch.pk).update(head=later,
                                                          status=DeliveryStatus.PENDING)
    second = branch_deliver(branch_id=branch.pk)
    assert second is not None and second.status == DeliveryStatus.DELIVERED, second.failure
    pulls = fake_github.pulls[fake_github.repo]
    assert len(pulls) == 2 and second.pull_request_number == pulls[1].number
    assert second.pull_request_state == PullRequestState.OPEN


def test_the_api_lists_branches_and_an_admin_token_asks_for_a_delivery(
        cast: Any, git_http_server: Any) -> None:
    from tests.fixtures import token_client

    git_http_server.create_repo(REPO, files={"app.py": "VALUE = 1\n"})
    project = _project(cast, git_http_server)
    branch = _haao_work(cast, project, {"app.py": "VALUE = 2\n"})
    base = f"/api/v1/orgs/acme/projects/{project.key}/branches/"
    admin = token_client(cast.org, cast.admin, ["read", "write", "admin"])
    [listed] = admin.get(base).json()
    assert (listed["branch"], listed["head"], listed["status"]) == (
        "haao/integration", branch.head, "pending")
    deliver = f"{base}{branch.pk}/deliver/"
    answer = admin.post(deliver, b"{}", content_type="application/json")
    assert answer.status_code == 202 and answer.json()["id"] == str(branch.pk)
    manager = token_client(cast.org, cast.manager, ["read", "write", "admin"])
    assert manager.post(deliver).status_code == 403
    assert admin.post(f"{base}00000000-0000-0000-0000-000000000000/deliver/").status_code == 404
    assert admin.post(f"/api/v1/orgs/acme/projects/{cast.other_project.key}/branches/"
                      f"{branch.pk}/deliver/").status_code == 404
    project.delivery = DeliveryMode.NONE
    project.save()
    refused = admin.post(deliver)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "delivery_off"

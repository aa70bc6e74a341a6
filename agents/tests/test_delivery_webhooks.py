"""The forge's webhooks as each forge signs them: pull request states reach the requirement,
labelled issues become requirements, and nothing unsigned is believed."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from django.test import Client

from agents.models import IntegrationBranch, PullRequestState
from haao.crypto import Secret
from tickets.models import DeliveryMode, Requirement, RequirementStatus, Ticket, TicketStatus
from tickets.services.requirements import _create as requirement_create_row

pytestmark = pytest.mark.django_db

FORGES = ["fake_github", "fake_gitlab", "fake_gitea"]


def _project_on(cast: Any, forge: Any) -> Any:
    project = cast.project
    project.forge = forge.kind
    project.forge_api_url = forge.api_url
    project.repository = forge.git.url_for(forge.repo)
    project.delivery = DeliveryMode.PULL_REQUEST
    project.webhook_secret = Secret(forge.webhook_secret)
    project.save()
    return project


def _post(client: Client, project: Any, headers: dict[str, str], body: bytes) -> Any:
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()
             if name.lower() != "content-type"}
    return client.post(f"/hooks/forge/{project.pk}/", data=body,
                       content_type="application/json", **extra)


def _delivered_requirement(cast: Any, project: Any) -> tuple[Requirement, IntegrationBranch]:
    from haao.audit import Actor

    requirement = requirement_create_row(project=project, title="Round totals",
                                         text="Round half a cent up.",
                                         actor=Actor.of(cast.product_owner))
    Requirement.objects.filter(pk=requirement.pk).update(status=RequirementStatus.APPROVED)
    requirement.refresh_from_db()
    branch = IntegrationBranch.objects.create(
        organization=cast.org, project=project, requirement=requirement,
        name=f"haao/{requirement.key}", base="a" * 40, head="b" * 40,
        delivered_commit="b" * 40, status="delivered", pull_request_number=1,
        pull_request_url="http://forge/pr/1", pull_request_state=PullRequestState.OPEN)
    return requirement, branch


@pytest.mark.parametrize("forge_fixture", FORGES)
def test_a_merged_pull_request_delivers_its_requirement(
        cast: Any, client: Client, request: pytest.FixtureRequest, forge_fixture: str) -> None:
    forge = request.getfixturevalue(forge_fixture)
    project = _project_on(cast, forge)
    requirement, branch = _delivered_requirement(cast, project)
    forge.git.commit(forge.repo, branch=branch.name, files={"NEW.md": "work\n"})
    pull = forge.create_pull(head=branch.name, title=requirement.title)
    forge.merge(pull.number)
    headers, body = forge.events[-1]

    answer = _post(client, project, headers, body)
    assert answer.status_code == 200, answer.content
    branch.refresh_from_db()
    requirement.refresh_from_db()
    assert branch.pull_request_state == PullRequestState.MERGED
    assert requirement.status == RequirementStatus.DELIVERED


def test_a_requirement_with_work_still_open_is_not_delivered_by_a_merge(
        cast: Any, client: Client, fake_github: Any) -> None:
    from tests.factories import TicketFactory

    project = _project_on(cast, fake_github)
    requirement, branch = _delivered_requirement(cast, project)
    ticket = TicketFactory(requirement=requirement)
    Ticket.objects.filter(pk=ticket.pk).update(status=TicketStatus.RUNNING)
    fake_github.git.commit(fake_github.repo, branch=branch.name, files={"NEW.md": "work\n"})
    fake_github.merge(fake_github.create_pull(head=branch.name).number)
    headers, body = fake_github.events[-1]
    assert _post(client, project, headers, body).status_code == 200
    requirement.refresh_from_db()
    assert requirement.status == RequirementStatus.APPROVED
    branch.refresh_from_db()
    assert branch.pull_request_state == PullRequestState.MERGED


@pytest.mark.parametrize("forge_fixture", FORGES)
def test_a_wrong_signature_and_an_unknown_project_look_the_same(
        cast: Any, client: Client, request: pytest.FixtureRequest, forge_fixture: str) -> None:
    forge = request.getfixturevalue(forge_fixture)
    project = _project_on(cast, forge)
    forge.webhook_secret = "not-the-projects-secret"
    forge.open_issue("Export CSV", "Add a CSV export.", ["haao"])
    headers, body = forge.events[-1]
    refused = _post(client, project, headers, body)
    assert refused.status_code == 404
    cast.other_project.webhook_secret = Secret("x")
    cast.other_project.save()
    unknown = client.post("/hooks/forge/00000000-0000-0000-0000-000000000000/", data=body,
                          content_type="application/json")
    assert (unknown.status_code, unknown.json()) == (404, refused.json())
    assert not Requirement.objects.filter(project=project).exists()


@pytest.mark.parametrize("forge_fixture", FORGES)
def test_a_labelled_issue_becomes_one_requirement(
        cast: Any, client: Client, request: pytest.FixtureRequest, forge_fixture: str) -> None:
    forge = request.getfixturevalue(forge_fixture)
    project = _project_on(cast, forge)
    issue = forge.open_issue("Export invoices as CSV", "Managers want a CSV export.",
                             ["haao", "feature"])
    answers = [_post(client, project, headers, body) for headers, body in forge.events]
    assert {answer.status_code for answer in answers} <= {200, 201}
    # Sent again (a redelivery), and labelled once more: still one requirement.
    for headers, body in forge.events:
        _post(client, project, headers, body)
    [requirement] = Requirement.objects.filter(project=project)
    assert requirement.title == "Export invoices as CSV"
    assert requirement.text == "Managers want a CSV export."
    assert requirement.issue_number == issue.number
    assert requirement.status == RequirementStatus.DECOMPOSING
    assert requirement.created_by is None


def test_an_issue_without_the_projects_label_is_ignored(
        cast: Any, client: Client, fake_github: Any) -> None:
    project = _project_on(cast, fake_github)
    fake_github.open_issue("Unrelated", "Not for HAAO.", ["bug"])
    for headers, body in fake_github.events:
        assert _post(client, project, headers, body).status_code == 200
    assert not Requirement.objects.filter(project=project).exists()


def test_a_signed_body_that_is_not_json_gets_a_400(cast: Any, client: Client,
                                                   fake_github: Any) -> None:
    project = _project_on(cast, fake_github)
    headers, _ = fake_github.webhook_request("issues", {"action": "opened"})
    body = b"{not json"
    headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(
        fake_github.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    answer = _post(client, project, headers, body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_payload"


def test_a_body_over_a_megabyte_is_refused_before_it_is_read(cast: Any, client: Client,
                                                            fake_github: Any) -> None:
    project = _project_on(cast, fake_github)
    answer = client.post(f"/hooks/forge/{project.pk}/", data=b"x" * (1024 * 1024 + 1),
                         content_type="application/json")
    assert answer.status_code == 413
    assert not Requirement.objects.filter(project=project).exists()

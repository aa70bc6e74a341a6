"""The portal's new-project form and a project's repository settings page (admins)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from agents.workspaces.git import git
from haao.models import AuditEvent
from tickets.models import Project

pytestmark = pytest.mark.django_db
PROJECTS = "/o/acme/projects/"
NEW = "/o/acme/projects/new/"
SETTINGS = "/o/acme/projects/PAY/settings/"
TOKEN = "ghp_portalSECRET0123456789"


@pytest.fixture(autouse=True)
def hosts(settings: Any, tmp_path: Path) -> Path:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["github.com", "git.example.com"]
    root = tmp_path / "repos"
    root.mkdir()
    settings.HAAO_LOCAL_REPOSITORIES = [str(root)]
    return root


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form(project: Project | None = None, **changes: Any) -> dict[str, Any]:
    """The settings form as a browser would post it, from the project's current values."""
    data: dict[str, Any] = {
        "name": "Payments", "description": "", "repository_url": "", "default_branch": "main",
        "setup_command": "[]", "test_command": "[]", "auth_method": "none", "token": "",
        "token_username": "", "delivery": "none", "forge": "", "forge_api_url": "",
        "intake_label": "haao"}
    if project is not None:
        project.refresh_from_db()
        data.update(name=project.name, repository_url=project.repository,
                    default_branch=project.default_branch,
                    setup_command=json.dumps(project.setup_command),
                    test_command=json.dumps(project.test_command),
                    auth_method=project.auth_method, delivery=project.delivery,
                    forge=project.forge, intake_label=project.intake_label)
    data.update(changes)
    return data


def snapshot(project: Project) -> dict[str, Any]:
    project.refresh_from_db()
    return {field.name: getattr(project, field.name) for field in Project._meta.concrete_fields}


def test_admins_see_new_project_and_settings_links_members_do_not(cast) -> None:
    admin = browser(cast.admin)
    assert 'href="new/"' in admin.get(PROJECTS).content.decode()
    assert SETTINGS in admin.get("/o/acme/projects/PAY/").content.decode()
    assign_perm("tickets.view_project", cast.member, cast.project)
    member = browser(cast.member)
    assert "New project" not in member.get(PROJECTS).content.decode()
    assert SETTINGS not in member.get("/o/acme/projects/PAY/").content.decode()


def test_an_admin_creates_a_project_from_the_portal(cast) -> None:
    response = browser(cast.admin).post(NEW, {
        **form(), "key": "WEB", "name": "Web", "delivery": "",
        "repository_url": "https://github.com/acme/web.git", "token": TOKEN,
        "test_command": '["pytest", "-q"]'})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == "/o/acme/projects/WEB/settings/"
    project = Project.objects.get(organization=cast.org, key="WEB")
    assert (project.forge, project.delivery, project.auth_method) == (
        "github", "pull_request", "token")
    assert project.test_command == ["pytest", "-q"]
    assert project.token.reveal() == TOKEN
    page = browser(cast.admin).get(response["Location"]).content.decode()
    assert TOKEN not in page
    assert f"/hooks/forge/{project.pk}/" in page


def test_settings_are_saved_and_only_changed_fields_audited(cast) -> None:
    client = browser(cast.admin)
    response = client.post(SETTINGS, form(cast.project, repository_url=
                                          "https://git.example.com/team/pay.git",
                                          delivery="branch", test_command='["make", "test"]'))
    assert response.status_code == 302, response.content.decode()[:2000]
    project = Project.objects.get(pk=cast.project.pk)
    assert project.repository == "https://git.example.com/team/pay.git"
    assert project.test_command == ["make", "test"]
    event = AuditEvent.objects.for_org(cast.org).filter(type="project.updated").get()
    assert set(event.data["fields"]) == {"repository_url", "delivery", "test_command"}


def test_a_blank_token_keeps_the_stored_one(cast) -> None:
    Project.objects.filter(pk=cast.project.pk).update(repository="https://github.com/a/b.git",
                                                      forge="github")
    project = Project.objects.get(pk=cast.project.pk)
    project.token = TOKEN
    project.save(update_fields=["token"])
    client = browser(cast.admin)
    assert client.post(SETTINGS, form(project, name="Pay")).status_code == 302
    assert Project.objects.get(pk=project.pk).token.reveal() == TOKEN
    assert TOKEN not in client.get(SETTINGS).content.decode()


@pytest.mark.parametrize(("field", "value", "words"), [
    ("test_command", "pytest -q", '[&quot;pytest&quot;, &quot;-q&quot;]'),
    ("repository_url", f"https://bot:{TOKEN}@github.com/a/b.git", "token"),
    ("repository_url", "https://127.0.0.1/a/b.git", "HAAO_ENDPOINT_ALLOWLIST"),
    ("repository_url", "/etc", "HAAO_LOCAL_REPOSITORIES"),
    ("default_branch", "a..b", "not a valid branch name"),
    ("delivery", "pull_request", "forge"),
    ("test_command", '["pytest", "\\ud800"]', "unpaired surrogate"),
    ("test_command", "[" * 10_000 + "]" * 10_000, "argv list"),
])
def test_bad_settings_rerender_with_the_error_and_store_nothing(
        cast, field, value, words) -> None:
    before = snapshot(cast.project)
    changes = {field: value}
    if field == "delivery":
        changes["repository_url"] = "https://git.example.com/team/pay.git"
    response = browser(cast.admin).post(SETTINGS, form(cast.project, **changes))
    assert response.status_code == 400
    page = response.content.decode()
    assert words in page
    assert TOKEN not in page
    assert snapshot(cast.project) == before


def test_the_same_rules_refuse_a_bad_new_project(cast) -> None:
    response = browser(cast.admin).post(NEW, {**form(), "key": "BAD", "name": "Bad",
                                              "test_command": "make test"})
    assert response.status_code == 400
    assert not Project.objects.filter(organization=cast.org, key="BAD").exists()


def test_generate_deploy_key_shows_the_public_key(cast) -> None:
    client = browser(cast.admin)
    response = client.post(f"{SETTINGS}deploy-key/")
    assert response.status_code == 302
    project = Project.objects.get(pk=cast.project.pk)
    assert project.ssh_public_key.startswith("ssh-ed25519 ")
    page = client.get(SETTINGS).content.decode()
    assert project.ssh_public_key in page
    assert "PRIVATE KEY" not in page


def test_test_connection_shows_the_report_in_words(cast, hosts, tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(["init", "--quiet", "-b", "trunk"], cwd=work)
    git(["commit", "--quiet", "--allow-empty", "-m", "first"], cwd=work)
    bare = hosts / "pay.git"
    git(["clone", "--quiet", "--bare", str(work), str(bare)], cwd=tmp_path)
    Project.objects.filter(pk=cast.project.pk).update(repository=str(bare))
    client = browser(cast.admin)
    assert client.post(f"{SETTINGS}connection-test/").status_code == 302
    page = client.get(SETTINGS).content.decode()
    assert "&#x27;main&#x27; does not exist" in page and "trunk" in page


def test_a_new_webhook_secret_is_shown_once_and_its_end_afterwards(cast) -> None:
    client = browser(cast.admin)
    response = client.post(f"{SETTINGS}webhook-secret/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = Project.objects.get(pk=cast.project.pk).webhook_secret.reveal()
    assert secret in response.content.decode()
    later = client.get(SETTINGS).content.decode()
    assert secret not in later and f"…{secret[-4:]}" in later
    event = AuditEvent.objects.for_org(cast.org).get(type="project.webhook_secret_rotated")
    assert secret not in json.dumps(event.data)


def test_members_get_403_and_outsiders_404(cast) -> None:
    assign_perm("tickets.view_project", cast.member, cast.project)
    member = browser(cast.member)
    for url in (SETTINGS, NEW):
        assert member.get(url).status_code == 403
    assert member.post(f"{SETTINGS}deploy-key/").status_code == 403
    assert member.post(f"{SETTINGS}webhook-secret/").status_code == 403
    outsider = browser(cast.outsider)
    assert outsider.get(SETTINGS).status_code == 404
    assert browser(cast.admin).get("/o/acme/projects/GLX/settings/").status_code == 404
    assert browser(cast.admin).get("/o/acme/projects/%00/settings/").status_code == 404
    assert not Project.objects.get(pk=cast.project.pk).ssh_public_key

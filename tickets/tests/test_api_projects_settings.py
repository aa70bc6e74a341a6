"""A project's repository settings through the API: create, change, refuse, audit, hide secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from guardian.shortcuts import assign_perm

from haao.models import AuditEvent
from tests.fixtures import audit_events, token_client
from tickets.models import Project

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/projects"
TOKEN = "ghp_s3cretTOKENvalue000111"
GITHUB = "https://github.com/acme/payments.git"
HOST_KEY = ("github.com ssh-ed25519 "
            "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")


@pytest.fixture(autouse=True)
def public_forges(settings: Any, tmp_path: Path) -> Path:
    """github.com and gitlab.com pass the SSRF guard without DNS; samples live in tmp_path."""
    settings.HAAO_ENDPOINT_ALLOWLIST = ["github.com", "gitlab.com", "git.example.com"]
    allowed = tmp_path / "repos"
    allowed.mkdir()
    settings.HAAO_LOCAL_REPOSITORIES = [str(allowed)]
    return allowed


@pytest.fixture
def admin(cast: Any) -> Any:
    return token_client(cast.org, cast.admin, ["write"])


def snapshot(project: Project) -> dict[str, Any]:
    project.refresh_from_db()
    return {field.name: getattr(project, field.name) for field in Project._meta.concrete_fields}


def patch(client: Any, body: Any, key: str = "PAY") -> Any:
    return client.patch(f"{BASE}/{key}/", json.dumps(body), content_type="application/json")


def test_an_admin_creates_a_project_connected_to_github(cast, admin) -> None:
    response = admin.post(f"{BASE}/", {
        "key": "WEB", "name": "Web", "repository_url": GITHUB, "token": TOKEN,
        "setup_command": ["pip", "install", "-e", "."], "test_command": ["pytest", "-q"],
    }, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["repository_url"] == GITHUB
    assert body["forge"] == "github"
    assert body["delivery"] == "pull_request"
    assert body["auth_method"] == "token"
    assert body["has_token"] is True
    assert "token" not in body and TOKEN not in response.content.decode()
    project = Project.objects.get(organization=cast.org, key="WEB")
    assert project.token.reveal() == TOKEN
    assert body["webhook_url"] == f"http://127.0.0.1:8000/hooks/forge/{project.pk}/"
    created = audit_events(cast.org, "project.created")[-1]
    assert created.data["repository_url"] == GITHUB
    assert TOKEN not in json.dumps(created.data)


@pytest.mark.parametrize(("url", "delivery"), [
    ("https://git.example.com/team/app.git", "branch"),
    ("git@github.com:acme/app.git", "pull_request"),
    ("ssh://git@github.com/acme/app.git", "pull_request"),
])
def test_delivery_defaults_to_the_way_the_host_can_take_it(cast, admin, url, delivery) -> None:
    response = admin.post(f"{BASE}/", {"key": "APP", "name": "App", "repository_url": url},
                          format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["delivery"] == delivery


def test_a_local_repository_inside_the_allowed_directory_keeps_work_in_haao(
        cast, admin, public_forges) -> None:
    repo = public_forges / "sample"
    repo.mkdir()
    response = admin.post(f"{BASE}/", {"key": "LOC", "name": "Local",
                                       "repository_url": str(repo)}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["delivery"] == "none"


def test_an_admin_changes_settings_and_the_change_is_audited(cast, admin) -> None:
    response = patch(admin, {"repository_url": GITHUB, "default_branch": "develop",
                             "test_command": ["pytest", "-q"], "intake_label": "ai"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["default_branch"], body["test_command"], body["intake_label"]) == (
        "develop", ["pytest", "-q"], "ai")
    updated = audit_events(cast.org, "project.updated")[-1]
    assert set(updated.data["fields"]) >= {"repository_url", "default_branch", "test_command",
                                           "intake_label", "forge"}
    assert updated.data["values"]["default_branch"] == "develop"


def test_a_new_repository_url_drops_the_token_and_pinned_host_keys(cast, admin) -> None:
    assert patch(admin, {"repository_url": GITHUB, "token": TOKEN}).json()["has_token"] is True
    Project.objects.filter(pk=cast.project.pk).update(ssh_known_hosts=HOST_KEY)
    assert len(patch(admin, {"name": "Pay"}).json()["ssh_host_keys"]) == 1
    body = patch(admin, {"repository_url": "https://gitlab.com/acme/payments.git"}).json()
    assert body["has_token"] is False
    assert body["ssh_host_keys"] == []
    assert body["forge"] == "gitlab"
    project = Project.objects.get(pk=cast.project.pk)
    assert not project.token and project.ssh_known_hosts == ""


def test_a_new_repository_url_with_a_token_in_the_same_request_keeps_that_token(
        cast, admin) -> None:
    patch(admin, {"repository_url": GITHUB, "token": "old-token-1"})
    body = patch(admin, {"repository_url": "https://github.com/acme/other.git",
                         "token": TOKEN}).json()
    assert body["has_token"] is True
    assert Project.objects.get(pk=cast.project.pk).token.reveal() == TOKEN


def test_the_token_is_never_returned_or_audited(cast, admin) -> None:
    patch(admin, {"repository_url": GITHUB, "token": TOKEN})
    for response in (admin.get(f"{BASE}/PAY/"), patch(admin, {"name": "Pay"})):
        assert TOKEN not in response.content.decode()
    for event in AuditEvent.objects.for_org(cast.org):
        assert TOKEN not in json.dumps(event.data)
    assert "token" in audit_events(cast.org, "project.updated")[0].data["fields"]


def test_a_member_who_sees_the_project_reads_its_settings_but_cannot_change_them(cast) -> None:
    assign_perm("tickets.view_project", cast.member, cast.project)
    client = token_client(cast.org, cast.member, ["write"])
    body = client.get(f"{BASE}/PAY/").json()
    assert {"repository_url", "has_token", "ssh_public_key", "ssh_host_keys", "webhook_url",
            "connection_report", "delivery"} <= set(body)
    before = snapshot(cast.project)
    assert patch(client, {"name": "Mine"}).status_code == 403
    assert snapshot(cast.project) == before


def test_an_outsider_gets_404_for_the_settings(cast) -> None:
    client = token_client(cast.other_org, cast.outsider, ["write"])
    assert client.get("/api/v1/orgs/acme/projects/PAY/").status_code == 404
    assert patch(client, {"name": "Mine"}).status_code == 404
    # The admin of acme cannot reach Globex's project through acme either.
    assert patch(token_client(cast.org, cast.admin, ["write"]), {"name": "x"},
                 key="GLX").status_code == 404


def test_put_is_not_allowed(admin) -> None:
    assert admin.put(f"{BASE}/PAY/", {"name": "x"}, format="json").status_code == 405


BAD = [
    ("name", 123),
    ("name", "a\x00b"),
    ("description", "x" * 6000),
    ("repository_url", ["https://github.com/a/b"]),
    ("repository_url", "https://github.com/a/b\x00"),
    ("repository_url", "https://github.com/" + "a" * 2000),
    ("repository_url", "http://140.82.112.3/acme/app.git"),  # plain http, a public host
    ("repository_url", "ext::sh -c touch% /tmp/pwned"),
    ("repository_url", "https://127.0.0.1/acme/app.git"),
    ("repository_url", "https://10.1.2.3/acme/app.git"),
    ("repository_url", "ssh://git@169.254.169.254/acme/app.git"),
    ("repository_url", "git@192.168.1.10:acme/app.git"),
    ("repository_url", "ssh://git:hunter2@github.com/acme/app.git"),
    ("repository_url", "https://bot@github.com/acme/app.git"),
    ("repository_url", "/etc"),
    ("repository_url", "file:///etc/passwd"),
    ("default_branch", "a..b"),
    ("default_branch", "-rf"),
    ("default_branch", 7),
    ("setup_command", "pip install -e ."),
    ("test_command", "pytest -q && rm -rf /"),
    ("test_command", ["pytest", ""]),
    ("test_command", ["pytest", 1]),
    ("test_command", ["pytest", "a\x00"]),
    ("test_command", ["x"] * 65),
    ("test_command", ["x" * 1001]),
    ("test_command", {"argv": ["pytest"]}),
    ("auth_method", "password"),
    ("delivery", "email"),
    ("forge", "bitbucket"),
    ("token", 12345),
    ("token", "has space"),
    ("token_username", "a:b"),
    ("forge_api_url", "http://169.254.169.254/api"),
    ("intake_label", ""),
    ("surprise", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}-{i}" for i, (f, _) in
                                                       enumerate(BAD)])
def test_bad_input_answers_400_naming_the_field_and_stores_nothing(
        cast, admin, field, value) -> None:
    before = snapshot(cast.project)
    audit_before = AuditEvent.objects.for_org(cast.org).count()
    response = patch(admin, {field: value})
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()["error"]["details"], response.json()
    assert snapshot(cast.project) == before
    assert AuditEvent.objects.for_org(cast.org).count() == audit_before
    created = admin.post(f"{BASE}/", {"key": "NEW", "name": "New", field: value}, format="json")
    assert created.status_code == 400, created.content[:300]
    assert field in created.json()["error"]["details"]
    assert not Project.objects.filter(organization=cast.org, key="NEW").exists()


def test_a_shell_string_is_refused_with_an_argv_example(admin) -> None:
    error = patch(admin, {"test_command": "pytest -q"}).json()["error"]
    assert '["pytest", "-q"]' in json.dumps(error["details"]["test_command"]).replace("\\", "")


def test_credentials_in_the_url_are_refused_without_echoing_them(cast, admin) -> None:
    response = patch(admin, {"repository_url": f"https://bot:{TOKEN}@github.com/acme/app.git"})
    assert response.status_code == 400
    assert "token" in response.json()["error"]["details"]["repository_url"][0]
    assert TOKEN not in response.content.decode()
    assert Project.objects.get(pk=cast.project.pk).repository == ""


def test_a_local_path_that_escapes_the_allowed_directory_is_refused(
        cast, admin, public_forges) -> None:
    outside = public_forges.parent / "outside"
    outside.mkdir()
    (public_forges / "link").symlink_to(outside)
    for url in (str(public_forges / ".." / "outside"), str(public_forges / "link"),
                f"file://{outside}"):
        response = patch(admin, {"repository_url": url})
        assert response.status_code == 400, url
        assert "HAAO_LOCAL_REPOSITORIES" in response.json()["error"]["message"]


def test_pull_requests_on_an_unknown_forge_need_the_forge_named(cast, admin) -> None:
    url = "https://git.example.com/team/app.git"
    response = patch(admin, {"repository_url": url, "delivery": "pull_request"})
    assert response.status_code == 400
    assert "forge" in response.json()["error"]["details"]
    ok = patch(admin, {"repository_url": url, "delivery": "pull_request", "forge": "gitea"})
    assert ok.status_code == 200, ok.json()
    assert ok.json()["forge"] == "gitea"


def test_a_private_host_passes_when_the_operator_allowlisted_it(cast, admin) -> None:
    with override_settings(HAAO_ENDPOINT_ALLOWLIST=["10.0.0.0/8"]):
        response = patch(admin, {"repository_url": "https://10.1.2.3/acme/app.git"})
    assert response.status_code == 200, response.json()


def test_the_schema_describes_the_settings(admin) -> None:
    schema = admin.get("/api/v1/schema/?format=json")
    if schema.status_code != 200:
        pytest.skip("schema served elsewhere")
    text = schema.content.decode()
    assert "projects_update" in text and "has_token" in text and "repository_url" in text


def test_an_admin_generates_a_deploy_key_and_tests_the_connection(cast, public_forges) -> None:
    client = token_client(cast.org, cast.admin, ["admin"])
    response = client.post(f"{BASE}/PAY/deploy-key/")
    assert response.status_code == 201
    public = response.json()["ssh_public_key"]
    assert public.startswith("ssh-ed25519 ") and public.endswith(" haao-PAY")
    body = client.get(f"{BASE}/PAY/").json()
    assert (body["ssh_public_key"], body["auth_method"]) == (public, "ssh_key")
    assert "PRIVATE" not in client.get(f"{BASE}/PAY/").content.decode()
    missing = public_forges / "missing.git"
    patch(client, {"repository_url": str(missing)})
    report = client.post(f"{BASE}/PAY/connection-test/").json()
    assert report["reachable"] is False or report["authenticated"] is False
    assert "not found" in report["message"]
    assert client.get(f"{BASE}/PAY/").json()["connection_report"]["message"] == report["message"]


def test_repository_actions_need_an_admin_token_and_role(cast) -> None:
    for url in (f"{BASE}/PAY/deploy-key/", f"{BASE}/PAY/connection-test/"):
        assert token_client(cast.org, cast.admin, ["write"]).post(url).status_code == 403
        assert token_client(cast.org, cast.member, ["admin"]).post(url).status_code == 403
        assert token_client(cast.other_org, cast.outsider, ["admin"]).post(
            url).status_code == 404
    assert not Project.objects.get(pk=cast.project.pk).ssh_public_key

"""A project's remote: credentials for git, deploy keys, pinned host keys, connection tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from agents.workspaces.git import git
from agents.workspaces.remote import (
    _explain,
    connection_test,
    deploy_key_generate,
    fingerprint,
    known_host_keys,
    remote_access,
)
from tests.fixtures import last_event
from tests.servers.git_ssh import GitSSHServer, ssh_unavailable_reason
from tickets.models import Project, RepositoryAuth

pytestmark = pytest.mark.django_db

TOKEN = "glpat-VERYsecret-0123456789"
KEY_A = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture
def repos(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "repos"
    root.mkdir()
    settings.HAAO_LOCAL_REPOSITORIES = [str(root)]
    return root


@pytest.fixture
def bare(repos: Path, tmp_path: Path) -> Path:
    """A bare repository with one commit on main and one on feature."""
    work = tmp_path / "work"
    work.mkdir()
    git(["init", "--quiet", "-b", "main"], cwd=work)
    (work / "README").write_text("hello\n")
    git(["add", "README"], cwd=work)
    git(["commit", "--quiet", "-m", "first"], cwd=work)
    git(["branch", "feature"], cwd=work)
    target = repos / "app.git"
    git(["clone", "--quiet", "--bare", str(work), str(target)], cwd=tmp_path)
    return target


def project_at(cast: Any, url: str, **fields: Any) -> Project:
    Project.objects.filter(pk=cast.project.pk).update(repository=url, **fields)
    return Project.objects.get(pk=cast.project.pk)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_local_repository_with_its_default_branch_connects(cast, bare) -> None:
    project = project_at(cast, str(bare))
    report = connection_test(project=project, actor=cast.admin)
    assert (report.reachable, report.authenticated, report.branch_exists) == (True, True, True)
    assert "main" in report.message
    project.refresh_from_db()
    assert project.connection_report["branch_exists"] is True
    assert last_event(cast.org, "project.connection_tested").data["branch_exists"] is True


def test_a_missing_default_branch_names_the_branches_that_exist(cast, bare) -> None:
    project = project_at(cast, f"file://{bare}", default_branch="develop")
    report = connection_test(project=project)
    assert report.reachable and report.authenticated and not report.branch_exists
    assert "'develop' does not exist" in report.message
    assert "feature" in report.message and "main" in report.message


def test_a_missing_repository_says_it_was_not_found(cast, repos) -> None:
    project = project_at(cast, str(repos / "nothing.git"))
    report = connection_test(project=project)
    assert not report.branch_exists
    assert "not found" in report.message


def test_an_https_host_that_does_not_answer_is_called_unreachable(cast, settings) -> None:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    project = project_at(cast, f"https://127.0.0.1:{free_port()}/acme/app.git",
                         auth_method=RepositoryAuth.TOKEN)
    project.token = TOKEN
    project.save(update_fields=["token"])
    report = connection_test(project=project, actor=cast.admin)
    assert not report.reachable
    assert "unreachable" in report.message
    event = last_event(cast.org, "project.connection_tested")
    assert TOKEN not in json.dumps(event.data) and TOKEN not in report.message


def test_a_private_host_not_on_the_allowlist_is_not_contacted(cast, settings) -> None:
    settings.HAAO_ENDPOINT_ALLOWLIST = []
    project = project_at(cast, "https://127.0.0.1:9/acme/app.git")
    report = connection_test(project=project)
    assert not report.reachable
    assert "HAAO_ENDPOINT_ALLOWLIST" in report.message


def test_the_token_reaches_git_only_through_the_askpass_script(cast) -> None:
    project = project_at(cast, "https://github.com/acme/app.git",
                         auth_method=RepositoryAuth.TOKEN, forge="github")
    project.token = TOKEN
    project.save(update_fields=["token"])
    project = Project.objects.get(pk=project.pk)
    with remote_access(project) as access:
        assert TOKEN not in access.url
        script = Path(access.env["GIT_ASKPASS"])
        assert TOKEN not in script.read_text()
        assert stat.S_IMODE(script.parent.stat().st_mode) == 0o700
        env = {"PATH": os.environ["PATH"], **access.env}
        ask = [str(script)]
        user = subprocess.run([*ask, "Username for 'https://github.com': "], env=env,
                              capture_output=True, text=True, check=True).stdout
        password = subprocess.run([*ask, "Password for 'https://x@github.com': "],
                                  env=env, capture_output=True, text=True, check=True).stdout
    assert (user, password) == ("x-access-token\n", f"{TOKEN}\n")
    assert not script.parent.exists()


def test_ssh_first_contact_accepts_and_pins_the_host_key(cast) -> None:
    project = project_at(cast, "git@github.com:acme/app.git")
    with remote_access(project) as access:
        command = access.env["GIT_SSH_COMMAND"]
        assert "StrictHostKeyChecking=accept-new" in command
        assert "BatchMode=yes" in command and "IdentitiesOnly=yes" in command
        known = Path(command.split("UserKnownHostsFile=")[1].split()[0])
        assert stat.S_IMODE(known.stat().st_mode) == 0o600
        known.write_text(f"github.com ssh-ed25519 {KEY_A}\n")  # what ssh learns on contact
    project.refresh_from_db()
    assert KEY_A in project.ssh_known_hosts
    event = last_event(cast.org, "project.host_key_pinned")
    assert event.data["fingerprints"] == [fingerprint(KEY_A)]
    with remote_access(project) as access:
        assert "StrictHostKeyChecking=yes" in access.env["GIT_SSH_COMMAND"]


def test_a_deploy_key_is_a_valid_openssh_ed25519_key_used_for_ssh(cast) -> None:
    project = project_at(cast, "ssh://git@github.com/acme/app.git")
    public = deploy_key_generate(project=project, actor=cast.admin)
    assert public.startswith("ssh-ed25519 AAAA") and public.endswith(" haao-PAY")
    load_ssh_public_key(public.rsplit(" ", 1)[0].encode())
    project = Project.objects.get(pk=project.pk)
    assert project.auth_method == RepositoryAuth.SSH_KEY
    assert project.ssh_public_key == public
    private = project.ssh_private_key.reveal()
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    load_ssh_private_key(private.encode(), password=None)
    event = last_event(cast.org, "project.deploy_key_generated")
    assert event.data == {"public_key": public}
    with remote_access(project) as access:
        key = Path(access.env["GIT_SSH_COMMAND"].split(" -i ")[1].split()[0])
        assert key.read_text().strip() == private.strip()
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not key.exists()
    if shutil.which("ssh-keygen"):
        derived = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=public,
                                 capture_output=True, text=True, check=False)
        assert derived.returncode == 0 and "ED25519" in derived.stdout


def test_a_changed_host_key_names_both_fingerprints(cast) -> None:
    project = project_at(cast, "git@github.com:acme/app.git",
                         ssh_known_hosts=f"github.com ssh-ed25519 {KEY_A}\n")
    offered = "SHA256:" + "B" * 43
    stderr = ("@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
              f"The fingerprint for the ED25519 key sent by the remote host is\n{offered}.\n"
              "Host key verification failed.\nfatal: Could not read from remote repository.")
    reachable, authenticated, words = _explain(stderr, project)
    assert reachable and not authenticated
    assert offered in words and fingerprint(KEY_A) in words


@pytest.mark.parametrize(("stderr", "words"), [
    ("ssh: Could not resolve hostname nowhere.example: Name or service not known", "DNS"),
    ("git@github.com: Permission denied (publickey).", "deploy key"),
    ("remote: Invalid username or password.\nfatal: Authentication failed for "
     f"'https://x:{TOKEN}@github.com/acme/app.git/'", "token"),
    ("remote: Repository not found.\nfatal: repository 'https://github.com/a/b/' not found",
     "not found"),
])
def test_failures_are_explained_in_words_without_the_token(cast, stderr, words) -> None:
    project = project_at(cast, "https://github.com/acme/app.git",
                         auth_method=RepositoryAuth.TOKEN)
    project.token = TOKEN
    project.save(update_fields=["token"])
    project = Project.objects.get(pk=project.pk)
    _, _, message = _explain(stderr, project)
    assert words in message
    assert TOKEN not in message


def test_known_host_keys_reads_fingerprints_as_ssh_keygen_does() -> None:
    keys = known_host_keys(f"# comment\ngithub.com ssh-ed25519 {KEY_A}\n\n")
    assert [k["host"] for k in keys] == ["github.com"]
    assert keys[0]["fingerprint"] == fingerprint(KEY_A)
    if shutil.which("ssh-keygen"):
        out = subprocess.run(["ssh-keygen", "-l", "-f", "-"],
                             input=f"ssh-ed25519 {KEY_A}\n", capture_output=True, text=True,
                             check=False).stdout
        assert fingerprint(KEY_A) in out


# --- End to end over SSH, against a real sshd on 127.0.0.1 -----------------------------------

@pytest.fixture
def sshd(settings: Any) -> Any:
    reason = ssh_unavailable_reason()
    if reason:
        pytest.skip(reason)
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    with GitSSHServer() as server:  # a directory of its own: the server's user reads it
        server.create_repo("app", files={"README": "hello\n"})
        yield server


def test_a_deploy_key_over_ssh_pins_the_host_key_and_notices_when_it_changes(
        cast, sshd) -> None:
    project = project_at(cast, sshd.url_for("app"))
    sshd.authorize(deploy_key_generate(project=project, actor=cast.admin))
    project = Project.objects.get(pk=project.pk)
    first = connection_test(project=project, actor=cast.admin)
    assert first.ok, first.message
    project.refresh_from_db()
    pinned = known_host_keys(project.ssh_known_hosts)
    assert [k["host"] for k in pinned] == [f"[127.0.0.1]:{sshd.port}"]
    assert first.host_keys == [f"[127.0.0.1]:{sshd.port} ssh-ed25519 {pinned[0]['fingerprint']}"]
    assert last_event(cast.org, "project.host_key_pinned").data["fingerprints"] == [
        pinned[0]["fingerprint"]]
    assert connection_test(project=project).ok  # pinned now: StrictHostKeyChecking=yes
    sshd.rotate_host_key()  # the same address, a new host key
    changed = connection_test(project=project)
    assert not changed.authenticated
    assert "changed" in changed.message and pinned[0]["fingerprint"] in changed.message
    project.refresh_from_db()
    assert known_host_keys(project.ssh_known_hosts) == pinned


def test_a_deploy_key_the_forge_does_not_know_is_explained(cast, sshd) -> None:
    sshd.authorize("ssh-ed25519 " + KEY_A + " someone-else")
    project = project_at(cast, sshd.url_for("app"))
    deploy_key_generate(project=project, actor=cast.admin)
    report = connection_test(project=Project.objects.get(pk=project.pk))
    assert report.reachable and not report.authenticated
    assert "deploy key" in report.message

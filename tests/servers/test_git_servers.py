"""The loopback git servers behave like real remotes: auth, push, rejection, host keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.workspaces.git import WorkspaceError, git
from tests.servers.git_http import GitHTTPServer
from tests.servers.git_ssh import GitSSHServer, generate_key

# HAAO's git() allows https and ssh only; the test server speaks plain http on loopback.
HTTP_ALLOWED = {"GIT_ALLOW_PROTOCOL": "file:http:https:ssh"}


def commit_file(work: Path, name: str, text: str) -> str:
    (work / name).write_text(text)
    git(["add", name], cwd=work)
    git(["commit", "-q", "-m", f"Add {name}"], cwd=work)
    return git(["rev-parse", "HEAD"], cwd=work).stdout.strip()


def clone_http(server: GitHTTPServer, tmp_path: Path, name: str = "acme/app") -> Path:
    work = tmp_path / "work"
    git(["clone", "-q", server.authenticated_url(name), str(work)], cwd=tmp_path,
        env=HTTP_ALLOWED)
    return work


def test_clone_push_and_fetch_over_http_with_basic_auth(git_http_server: GitHTTPServer,
                                                        tmp_path: Path) -> None:
    git_http_server.create_repo("acme/app", files={"README.md": "hello\n"})
    work = clone_http(git_http_server, tmp_path)
    assert (work / "README.md").read_text() == "hello\n"

    pushed = commit_file(work, "feature.txt", "new\n")
    git(["push", "-q", "origin", "main"], cwd=work, env=HTTP_ALLOWED)
    assert git_http_server.branch_sha("acme/app", "main") == pushed
    assert git_http_server.read_file("acme/app", branch="main", path="feature.txt") == "new\n"

    theirs = git_http_server.commit("acme/app", branch="main", files={"NEWS": "team\n"})
    git(["fetch", "-q", "origin"], cwd=work, env=HTTP_ALLOWED)
    assert git(["rev-parse", "origin/main"], cwd=work).stdout.strip() == theirs
    assert {request.user for request in git_http_server.requests if request.status == 200} \
        == {"haao"}


def test_a_wrong_password_is_refused_without_showing_it(git_http_server: GitHTTPServer,
                                                        tmp_path: Path) -> None:
    git_http_server.create_repo("acme/app")
    url = git_http_server.authenticated_url("acme/app", password="not-the-password")
    with pytest.raises(WorkspaceError) as refused:
        git(["clone", "-q", url, str(tmp_path / "work")], cwd=tmp_path, env=HTTP_ALLOWED)
    assert "Authentication failed" in refused.value.message
    assert "not-the-password" not in refused.value.message
    assert not (tmp_path / "work").exists()
    assert [request.status for request in git_http_server.requests] == [401, 401]


def test_a_client_without_credentials_is_asked_for_basic_auth(
        git_http_server: GitHTTPServer) -> None:
    import httpx

    git_http_server.create_repo("acme/app")
    response = httpx.get(git_http_server.url_for("acme/app") + "/info/refs",
                         params={"service": "git-upload-pack"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_push_is_rejected_when_the_remote_moved(git_http_server: GitHTTPServer,
                                                  tmp_path: Path) -> None:
    git_http_server.create_repo("acme/app")
    work = clone_http(git_http_server, tmp_path)
    theirs = git_http_server.commit("acme/app", branch="main", files={"NEWS": "team\n"})
    commit_file(work, "mine.txt", "mine\n")

    with pytest.raises(WorkspaceError) as rejected:
        git(["push", "origin", "main"], cwd=work, env=HTTP_ALLOWED)
    assert "rejected" in rejected.value.message
    assert git_http_server.branch_sha("acme/app", "main") == theirs


def test_a_protected_branch_refuses_pushes(git_http_server: GitHTTPServer,
                                           tmp_path: Path) -> None:
    git_http_server.create_repo("acme/app")
    git_http_server.protect("acme/app", "main")
    work = clone_http(git_http_server, tmp_path)
    before = git_http_server.branch_sha("acme/app", "main")
    commit_file(work, "mine.txt", "mine\n")

    with pytest.raises(WorkspaceError) as refused:
        git(["push", "origin", "main"], cwd=work, env=HTTP_ALLOWED)
    assert "Protected branch update failed" in refused.value.message
    assert git_http_server.branch_sha("acme/app", "main") == before
    # Other branches still take pushes.
    git(["push", "-q", "origin", "main:haao/work"], cwd=work, env=HTTP_ALLOWED)
    assert git_http_server.branch_sha("acme/app", "haao/work") is not None


def test_a_stopped_server_is_down_and_comes_back_on_the_same_url(
        git_http_server: GitHTTPServer, tmp_path: Path) -> None:
    git_http_server.create_repo("acme/app")
    url = git_http_server.authenticated_url("acme/app")
    git_http_server.stop()
    with pytest.raises(WorkspaceError) as down:
        git(["ls-remote", url], cwd=tmp_path, env=HTTP_ALLOWED)
    assert "connect" in down.value.message.lower()

    git_http_server.start()
    listed = git(["ls-remote", url, "refs/heads/main"], cwd=tmp_path, env=HTTP_ALLOWED)
    assert git_http_server.branch_sha("acme/app", "main") in listed.stdout


def test_a_repository_is_served_from_an_existing_one_or_a_directory(git_http_server: GitHTTPServer,
                                                     tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    git(["init", "-q", "-b", "main"], cwd=source)
    sha = commit_file(source, "app.py", "print('hi')\n")
    git_http_server.create_repo("team/copy", source=source)
    work = clone_http(git_http_server, tmp_path, "team/copy")
    assert git(["rev-parse", "HEAD"], cwd=work).stdout.strip() == sha

    # A plain directory of files becomes the first commit of main.
    git_http_server.create_repo("team/files", directory=source)
    assert git_http_server.read_file("team/files", branch="main", path="app.py") == \
        "print('hi')\n"


# SSH ---------------------------------------------------------------------------------------


def ssh_env(tmp_path: Path, server: GitSSHServer, key: Path) -> dict[str, str]:
    known_hosts = server.known_hosts(tmp_path / "known_hosts")
    return {"GIT_SSH_COMMAND": (
        f"ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
        f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes")}


def test_clone_and_push_over_ssh_with_a_key_and_a_pinned_host(git_ssh_server: GitSSHServer,
                                                              tmp_path: Path) -> None:
    git_ssh_server.create_repo("acme/app", files={"README.md": "over ssh\n"})
    key = tmp_path / "id_ed25519"
    git_ssh_server.authorize(generate_key(key))
    env = ssh_env(tmp_path, git_ssh_server, key)
    work = tmp_path / "work"

    git(["clone", "-q", git_ssh_server.url_for("acme/app"), str(work)], cwd=tmp_path, env=env)
    assert (work / "README.md").read_text() == "over ssh\n"
    pushed = commit_file(work, "feature.txt", "new\n")
    git(["push", "-q", "origin", "main"], cwd=work, env=env)
    assert git_ssh_server.branch_sha("acme/app", "main") == pushed


def test_an_unknown_key_is_refused_over_ssh(git_ssh_server: GitSSHServer,
                                            tmp_path: Path) -> None:
    git_ssh_server.create_repo("acme/app")
    key = tmp_path / "id_ed25519"
    generate_key(key)  # never authorized
    with pytest.raises(WorkspaceError) as refused:
        git(["ls-remote", git_ssh_server.url_for("acme/app")], cwd=tmp_path,
            env=ssh_env(tmp_path, git_ssh_server, key))
    assert "Permission denied" in refused.value.message


def test_a_changed_host_key_is_refused(git_ssh_server: GitSSHServer, tmp_path: Path) -> None:
    git_ssh_server.create_repo("acme/app")
    key = tmp_path / "id_ed25519"
    git_ssh_server.authorize(generate_key(key))
    env = ssh_env(tmp_path, git_ssh_server, key)  # pins the first host key
    url = git_ssh_server.url_for("acme/app")
    git(["ls-remote", url], cwd=tmp_path, env=env)

    git_ssh_server.rotate_host_key()
    with pytest.raises(WorkspaceError) as refused:
        git(["ls-remote", url], cwd=tmp_path, env=env)
    assert "Host key verification failed" in refused.value.message

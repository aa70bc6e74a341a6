"""Pytest fixtures for real git servers and fake forges on 127.0.0.1 (tests/servers/).

- `git_http_server`: a started GitHTTPServer (user "haao", password "git-secret").
- `git_ssh_server`: a started GitSSHServer; skipped when sshd cannot run here, failed instead
  when HAAO_REQUIRE_SSH=1 (CI installs openssh-server and openssh-client).
- `fake_github`, `fake_gitlab`, `fake_gitea`: a fake forge on its own port whose repository
  "acme/app" (a README on main) lives in that test's `git_http_server`.

Everything is function-scoped: a test may stop a server, protect a branch or rotate a key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers.forges import FakeGitea, FakeGitHub, FakeGitLab
from tests.servers.git_http import GitHTTPServer
from tests.servers.git_ssh import GitSSHServer, GitSSHUnavailable, ssh_unavailable_reason

DEFAULT_REPO = "acme/app"


@pytest.fixture
def git_http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHTTPServer]:
    """A smart-HTTP git server with Basic auth, stopped after the test."""
    with GitHTTPServer(tmp_path_factory.mktemp("git-http")) as server:
        yield server


@pytest.fixture
def git_ssh_server() -> Iterator[GitSSHServer]:
    """sshd with a git-shell user on a free port, stopped after the test."""
    required = os.environ.get("HAAO_REQUIRE_SSH") == "1"
    reason = ssh_unavailable_reason()
    if reason:
        if required:
            pytest.fail(f"HAAO_REQUIRE_SSH=1 but {reason}")
        pytest.skip(reason)
    server = GitSSHServer()
    try:
        server.start()
    except GitSSHUnavailable as error:
        server.close()
        if required:
            pytest.fail(f"HAAO_REQUIRE_SSH=1 but sshd did not start: {error}")
        pytest.skip(f"sshd did not start: {error}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fake_github(git_http_server: GitHTTPServer) -> Iterator[FakeGitHub]:
    """GitHub's pull request API (GitHub Enterprise paths, /api/v3) over "acme/app"."""
    with FakeGitHub(git_http_server) as forge:
        forge.create_repo(DEFAULT_REPO)
        yield forge


@pytest.fixture
def fake_gitlab(git_http_server: GitHTTPServer) -> Iterator[FakeGitLab]:
    """GitLab's merge request API (/api/v4) over "acme/app"."""
    with FakeGitLab(git_http_server) as forge:
        forge.create_repo(DEFAULT_REPO)
        yield forge


@pytest.fixture
def fake_gitea(git_http_server: GitHTTPServer) -> Iterator[FakeGitea]:
    """Gitea's pull request API (/api/v1) over "acme/app"."""
    with FakeGitea(git_http_server) as forge:
        forge.create_repo(DEFAULT_REPO)
        yield forge

"""How git reaches a project's remote: credentials, pinned host keys and the connection test.

The token travels only through the environment of one git process and a tiny askpass script
that prints it; it never appears on a command line, in a URL, an event or a message. The SSH
deploy key and known_hosts are written to a private directory that lives as long as the
`remote_access` block.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone

from agents.workspaces.git import WorkspaceError, git
from agents.workspaces.repos import workspace_prepare
from haao.errors import ApplicationError
from haao.text import redact_userinfo
from tickets.models import ForgeKind, Project, RepositoryAuth
from tickets.services import (
    project_connection_report_set,
    project_deploy_key_set,
    project_host_keys_pin,
)
from tickets.services.project_settings import clean_repository_url, revealed

CONNECTION_TIMEOUT = 60.0
DEFAULT_TOKEN_USERNAMES: dict[str, str] = {ForgeKind.GITHUB: "x-access-token",
                                           ForgeKind.GITLAB: "oauth2"}
FALLBACK_TOKEN_USERNAME = "haao"  # noqa: S105 - a user name, not a secret
# Prints the user name or the token from the environment: the prompt decides which.
ASKPASS_SCRIPT = """#!/bin/sh
case "$1" in
  *sername*) printf '%s\\n' "$HAAO_GIT_USERNAME" ;;
  *) printf '%s\\n' "$HAAO_GIT_PASSWORD" ;;
esac
"""
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:]")
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{20,}")
BRANCHES_SHOWN = 5


@dataclass(frozen=True)
class RemoteAccess:
    url: str  # the repository URL to give git (never with credentials in it)
    env: dict[str, str]  # extra environment for agents.workspaces.git.git()


@dataclass(frozen=True)
class ConnectionReport:
    reachable: bool
    authenticated: bool
    branch_exists: bool
    message: str
    checked_at: str
    host_keys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reachable and self.authenticated and self.branch_exists


def uses_ssh(url: str) -> bool:
    """Whether git reaches this repository over SSH (ssh:// or user@host:path)."""
    return url.lower().startswith("ssh://") or bool(_SCP_LIKE.match(url))


def token_username(project: Project) -> str:
    """The user name sent with the token: the project's, else the forge's usual one."""
    return (project.token_username or DEFAULT_TOKEN_USERNAMES.get(project.forge, "")
            or FALLBACK_TOKEN_USERNAME)


def fingerprint(key_base64: str) -> str:
    """The SHA256 fingerprint of a public key blob, as `ssh-keygen -l` prints it."""
    try:
        blob = base64.b64decode(key_base64, validate=True)
    except ValueError:
        return "(unreadable key)"
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def known_host_keys(known_hosts: str) -> list[dict[str, str]]:
    """The pinned host keys of known_hosts text: host, type, fingerprint and the line."""
    keys = []
    for line in known_hosts.splitlines():
        parts = line.split()
        if len(parts) < 3 or line.startswith("#"):
            continue
        if parts[0].startswith("@"):  # @cert-authority / @revoked markers
            parts = parts[1:]
            if len(parts) < 3:
                continue
        keys.append({"host": parts[0], "type": parts[1], "fingerprint": fingerprint(parts[2]),
                     "line": line.strip()})
    return keys


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@contextmanager
def remote_access(project: Project) -> Iterator[RemoteAccess]:
    """Credentials for one git conversation with the project's remote, removed afterwards.

    Over SSH without pinned host keys, the first contact accepts the server's key and pins
    what it learned in the project (audited as `project.host_key_pinned`)."""
    url = project.repository
    home = Path(tempfile.mkdtemp(prefix="haao-remote-"))
    os.chmod(home, 0o700)
    first_contact = False
    known_hosts = home / "known_hosts"
    try:
        env: dict[str, str] = {}
        if uses_ssh(url):
            _write(known_hosts, project.ssh_known_hosts, 0o600)
            first_contact = not project.ssh_known_hosts.strip()
            options = [
                "ssh", "-F", "/dev/null",
                "-o", f"UserKnownHostsFile={known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"StrictHostKeyChecking={'accept-new' if first_contact else 'yes'}",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "ConnectTimeout=20",
            ]
            private = revealed(project.ssh_private_key)
            if project.auth_method == RepositoryAuth.SSH_KEY and private:
                key = home / "id_ed25519"
                _write(key, private if private.endswith("\n") else private + "\n", 0o600)
                options += ["-i", str(key)]
            env["GIT_SSH_COMMAND"] = shlex.join(options)
            env["GIT_SSH_VARIANT"] = "ssh"
        elif project.auth_method == RepositoryAuth.TOKEN and revealed(project.token):
            askpass = home / "askpass"
            _write(askpass, ASKPASS_SCRIPT, 0o700)
            env.update(GIT_ASKPASS=str(askpass), HAAO_GIT_USERNAME=token_username(project),
                       HAAO_GIT_PASSWORD=revealed(project.token))
        yield RemoteAccess(url=url, env=env)
        if first_contact and known_hosts.is_file():
            learned = known_hosts.read_text()
            if learned.strip():

                project_host_keys_pin(
                    project=project, known_hosts=learned,
                    fingerprints=[key["fingerprint"] for key in known_host_keys(learned)])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def deploy_key_generate(*, project: Project, actor: Any) -> str:
    """A new Ed25519 deploy key for the project; returns the public key to add to the forge."""

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    public = f"{public} haao-{project.key}"
    project_deploy_key_set(project=project, private_key=private, public_key=public, actor=actor)
    return public


def _scrub(text: str, project: Project) -> str:
    """git's words without credentials: URLs' userinfo and the token itself are removed."""
    text = redact_userinfo(text)
    token = revealed(project.token)
    if token:
        text = text.replace(token, "***")
    return text.strip()[-600:]


def _host(url: str) -> str:
    if _SCP_LIKE.match(url):
        return url.split("@", 1)[1].split(":", 1)[0]
    return urlsplit(url).hostname or "the server"


def _explain(stderr: str, project: Project) -> tuple[bool, bool, str]:
    """(reachable, authenticated, words) for a failed `git ls-remote`."""
    text = stderr.lower()
    host = _host(project.repository)
    said = _scrub(stderr, project)
    if "host identification has changed" in text or "host key verification failed" in text:
        pinned = ", ".join(k["fingerprint"] for k in known_host_keys(project.ssh_known_hosts))
        offered = ", ".join(dict.fromkeys(_FINGERPRINT.findall(stderr))) or "not shown"
        if pinned:
            return True, False, (
                f"The host key of {host} changed: it now offers {offered}, but HAAO pinned "
                f"{pinned}. If the server's key was really replaced, clear the pinned key in "
                "the project's settings; otherwise someone may be in the way.")
        return True, False, f"{host}'s host key could not be verified. git said: {said}"
    if any(s in text for s in ("could not resolve host", "could not resolve hostname",
                               "name or service not known", "temporary failure in name")):
        return False, False, (f"The host {host} could not be found (DNS). Check the "
                              "repository URL's spelling and that this server can resolve it.")
    if any(s in text for s in ("connection refused", "failed to connect", "couldn't connect",
                               "connection timed out", "no route to host", "timed out",
                               "network is unreachable", "operation timed out")):
        return False, False, (f"The host {host} is unreachable from HAAO's servers: nothing "
                              "answered on its port. Check the URL, the port and any firewall.")
    if any(s in text for s in ("permission denied (publickey", "permission denied, please try")):
        return True, False, (
            f"{host} refused the SSH deploy key: add the project's public key to the "
            "repository's deploy keys in the forge (read access is enough for the test, "
            "write access for delivery).")
    if any(s in text for s in ("authentication failed", "could not read username",
                               "could not read password", "invalid username or password",
                               "http basic: access denied", " 401", " 403",
                               "terminal prompts disabled")):
        if project.auth_method == RepositoryAuth.TOKEN and project.token:
            words = ("the token was refused: it is wrong, expired, or lacks read access to "
                     "this repository")
        else:
            words = "the repository needs credentials: enter a token or generate a deploy key"
        return True, False, f"Authentication at {host} failed: {words}."
    if any(s in text for s in ("repository not found", "not found", "does not appear to be a "
                               "git repository", "no such file or directory", " 404")):
        return True, False, (
            f"The repository was not found at {redact_userinfo(project.repository)}. "
            "Check the path; "
            "a private repository also answers like this when the credentials lack access.")
    return False, False, f"git could not reach the repository: {said or 'no reason given'}"


def connection_test(*, project: Project, actor: Any = None) -> ConnectionReport:
    """Ask the remote for the default branch; store and audit the report in plain words."""

    report = connection_check(project)
    project_connection_report_set(project=project, report=asdict(report), actor=actor)
    return report


def connection_check(project: Project) -> ConnectionReport:
    """Ask the remote for the default branch; the report in plain words, not stored."""

    now = timezone.now().isoformat()
    report: ConnectionReport | None = None
    if not project.repository:
        report = ConnectionReport(False, False, False, "The project has no repository URL yet.",
                                  now)
    else:
        try:
            # Again at test time: what the host resolves to may have changed since it was saved.
            clean_repository_url(project.repository)
        except ApplicationError as error:
            report = ConnectionReport(False, False, False, error.message, now)
    if report is None:
        # The host keys after the conversation: a first contact has pinned them by now.
        report = replace(_ls_remote(project, now), host_keys=_host_keys(project))
    return report


def _ls_remote(project: Project, now: str) -> ConnectionReport:
    branch = project.default_branch
    with remote_access(project) as access, tempfile.TemporaryDirectory() as cwd:
        try:
            result = git(["ls-remote", "--heads", access.url, f"refs/heads/{branch}"],
                         cwd=Path(cwd), env=access.env, check=False, timeout=CONNECTION_TIMEOUT)
        except WorkspaceError as error:
            return ConnectionReport(False, False, False, _scrub(error.message, project), now)
        if result.returncode != 0:
            reachable, authenticated, words = _explain(result.stderr, project)
            return ConnectionReport(reachable, authenticated, False, words, now)
        if result.stdout.strip():
            return ConnectionReport(True, True, True, f"Connected: the branch {branch!r} exists "
                                    "and HAAO can read it.", now)
        others = git(["ls-remote", "--heads", access.url], cwd=Path(cwd), env=access.env,
                     check=False, timeout=CONNECTION_TIMEOUT).stdout.split()
    names = [ref.removeprefix("refs/heads/") for ref in others if ref.startswith("refs/heads/")]
    shown = ", ".join(names[:BRANCHES_SHOWN]) + ("…" if len(names) > BRANCHES_SHOWN else "")
    exists = f" Branches that exist: {shown}." if names else " The repository has no branches."
    return ConnectionReport(True, True, False, f"Connected, but the default branch {branch!r} "
                            f"does not exist.{exists}", now)


def _host_keys(project: Project) -> list[str]:
    project.refresh_from_db(fields=["ssh_known_hosts"])
    return [f"{k['host']} {k['type']} {k['fingerprint']}"
            for k in known_host_keys(project.ssh_known_hosts)]


# How long a process trusts its last fetch of a project's repository, unless told otherwise.
WORKSPACE_REFRESH_SECONDS = 60
# How old a fetch the loop's steps take as the team's current code: the checks and merges of
# a busy project share one fetch instead of each paying for one.
STEP_FETCH_SECONDS = 2.0

_prepared: dict[Any, tuple[float, Path]] = {}


def workspace_of(project: Project, *, max_age: float = WORKSPACE_REFRESH_SECONDS) -> Path:
    """This machine's cache of the project's repository, fetched from the team's remote unless
    this process fetched it at most `max_age` seconds ago (0: fetch now); HAAO's own commits
    come from the database."""
    key = (project.pk, project.repository, project.default_branch)
    seen = _prepared.get(key)
    if seen is not None and time.monotonic() - seen[0] < max_age \
            and (seen[1] / "HEAD").is_file():
        return seen[1]
    with remote_access(project) as access:
        repo = workspace_prepare(project_id=project.pk, repository=access.url,
                                 default_branch=project.default_branch,
                                 root=settings.HAAO_WORKSPACE_ROOT, env=access.env,
                                 known=seen is not None)
    _prepared[key] = (time.monotonic(), repo)
    return repo


def workspace_refetch(project: Project, repo: Path) -> bool:
    """Fetch `repo`, the project's workspace as workspace_of gave it, now, however recent its
    last fetch; False, doing nothing, for any other repository."""
    key = (project.pk, project.repository, project.default_branch)
    seen = _prepared.get(key)
    if seen is None or seen[1] != Path(repo):
        return False
    workspace_of(project, max_age=0)
    return True

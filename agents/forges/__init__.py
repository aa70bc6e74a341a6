"""Forge adapters: pull requests and webhooks on GitHub, GitLab and Gitea/Forgejo.

    forge = forge_for(kind="github", api_url="https://api.github.com",
                      repository_path="acme/app", token=token, transport=pinned)
    pull = forge.pull_request_open(head_branch="haao/PAY-12", base_branch="main",
                                   title="PAY-12: …", body="…")
    if GitHub.webhook_verify(headers=request.headers, body=request.body, secret=secret):
        event = GitHub.webhook_parse(headers=request.headers, body=request.body)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from agents.forges.base import Forge, ForgeError, ForgeEvent, PullRequest, lower_headers
from agents.forges.gitea import Gitea
from agents.forges.github import GitHub
from agents.forges.gitlab import GitLab

FORGES: dict[str, type[Forge]] = {"github": GitHub, "gitlab": GitLab, "gitea": Gitea}
# Hosts whose forge is known without asking the admin.
_KNOWN_HOSTS = {
    "github.com": ("github", "https://api.github.com"),
    "www.github.com": ("github", "https://api.github.com"),
    "gitlab.com": ("gitlab", "https://gitlab.com/api/v4"),
}
_API_SUFFIX = {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}
# git@host:owner/repo.git (scp-like); the path must not start with "/" or it is ssh://-less.
_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/\s][^\s]*)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")


def forge_for(*, kind: str, api_url: str, repository_path: str, token: str,
              transport: httpx.BaseTransport | None = None,
              organization_id: Any = None) -> Forge:
    """The adapter for kind ("github", "gitlab" or "gitea")."""
    try:
        cls = FORGES[kind]
    except KeyError:
        raise ForgeError(f"{kind!r} is not a forge HAAO knows; choose one of "
                         f"{', '.join(sorted(FORGES))}.", kind="invalid") from None
    return cls(api_url=api_url, repository_path=repository_path, token=token,
               transport=transport, organization_id=organization_id)


def forge_class_for_webhook(headers: Mapping[str, str]) -> type[Forge]:
    """Which forge sent a delivery, told by its event header (Gitea also sends GitHub's)."""
    folded = lower_headers(headers)
    if "x-gitea-event" in folded or "x-forgejo-event" in folded:
        return Gitea
    if "x-gitlab-event" in folded:
        return GitLab
    if "x-github-event" in folded:
        return GitHub
    raise ForgeError("The webhook has no event header of GitHub, GitLab or Gitea.",
                     kind="invalid")


def default_api_url(kind: str, host_base: str) -> str:
    """The REST API root of kind on a host, e.g. ("gitea", "https://git.example") -> …/api/v1."""
    base = host_base.rstrip("/")
    host = (urlsplit(base).hostname or "").lower()
    if host in _KNOWN_HOSTS and _KNOWN_HOSTS[host][0] == kind:
        return _KNOWN_HOSTS[host][1]
    return base + _API_SUFFIX.get(kind, "")


def forge_defaults(repository_url: str) -> tuple[str, str, str] | None:
    """(kind or "", API URL, "owner/repo") guessed from a clone URL; None when it is not one.

    Only github.com and gitlab.com are recognised; for other hosts the kind is "" and the API
    URL is the host's web root, for the admin to complete with default_api_url()."""
    url = repository_url.strip()
    if "://" in url:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http", "ssh", "git+ssh", "ssh+git", "git"):
            return None
        host, path = (parts.hostname or "").lower(), parts.path
        # An SSH or git:// port says nothing about where the web and API answer.
        web = scheme if scheme in ("https", "http") else "https"
        suffix = f":{port}" if port and web == scheme else ""
        host_base = f"{web}://{host}{suffix}"
    else:
        match = _SCP_LIKE.match(url)
        if not match:
            return None
        host, path = match.group("host").lower(), match.group("path")
        host_base = f"https://{host}"
    path = path.strip("/")
    path = path.removesuffix(".git")
    segments = path.split("/")
    if not host or len(segments) < 2 or not all(
            _SEGMENT.match(segment) and segment not in (".", "..") for segment in segments):
        return None
    if host in _KNOWN_HOSTS:
        kind, api_url = _KNOWN_HOSTS[host]
        if kind == "github":
            segments = segments[:2]  # github.com/o/r/tree/main is still o/r
        return kind, api_url, "/".join(segments)
    return "", host_base, "/".join(segments)


__all__ = [
    "FORGES",
    "Forge",
    "ForgeError",
    "ForgeEvent",
    "GitHub",
    "GitLab",
    "Gitea",
    "PullRequest",
    "default_api_url",
    "forge_class_for_webhook",
    "forge_defaults",
    "forge_for",
]

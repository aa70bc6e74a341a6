"""Forge adapters: pull requests and webhooks on GitHub, GitLab and Gitea/Forgejo.

    forge = forge_for(kind="github", api_url="https://api.github.com",
                      repository_path="acme/app", token=token, transport=pinned)
    pull = forge.pull_request_open(head_branch="haao/PAY-12", base_branch="main",
                                   title="PAY-12: …", body="…")
    if GitHub.webhook_verify(headers=request.headers, body=request.body, secret=secret):
        event = GitHub.webhook_parse(headers=request.headers, body=request.body)
"""

from __future__ import annotations

from typing import Any

import httpx

from agents.forges.base import Forge, ForgeError, ForgeEvent, PullRequest
from agents.forges.gitea import Gitea
from agents.forges.github import GitHub
from agents.forges.gitlab import GitLab

FORGES: dict[str, type[Forge]] = {"github": GitHub, "gitlab": GitLab, "gitea": Gitea}
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


__all__ = [
    "FORGES",
    "Forge",
    "ForgeError",
    "ForgeEvent",
    "GitHub",
    "GitLab",
    "Gitea",
    "PullRequest",
    "forge_for",
]

"""Gitea and Forgejo (e.g. Codeberg) pull requests through the REST API v1."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from agents.forges.base import (
    Forge,
    ForgeError,
    ForgeEvent,
    PullRequest,
    as_dict,
    as_int,
    as_str,
    label_names,
    load_payload,
    lower_headers,
)

# Gitea's words for an action, in GitHub's (ForgeEvent.action).
_ACTIONS = {"label_updated": "labeled", "label_cleared": "unlabeled"}


def _state(data: Mapping[str, Any]) -> str:
    if data.get("merged") is True:
        return "merged"
    return "closed" if data.get("state") == "closed" else "open"


class Gitea(Forge):
    """Pull requests of owner/repo; the API is https://HOST/api/v1."""

    kind = "gitea"
    display_name = "Gitea"
    needed_scopes = '"write:repository"'
    page_size = 50  # Gitea's default maximum page size (API.MAX_RESPONSE_ITEMS)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self._token}"}

    def _pulls(self, *more: str | int) -> str:
        return self._path("repos", *self._owner_repo, "pulls", *more)

    def _find(self, head_branch: str, *, state: str, base_branch: str = ""
              ) -> PullRequest | None:
        # Gitea's listing cannot filter by head branch: read the pages, newest first.
        params = {"state": state, "limit": self.page_size}
        found = [item for item in self._paginate(self._pulls(), params)
                 if as_str(as_dict(item.get("head")).get("ref")) == head_branch
                 and (not base_branch
                      or as_str(as_dict(item.get("base")).get("ref")) == base_branch)]
        return self._parse(self._newest(found, "number")) if found else None

    def _create_body(self, *, head_branch: str, base_branch: str, title: str,
                     body: str) -> dict[str, Any]:
        return {"head": head_branch, "base": base_branch, "title": title, "body": body}

    def _existing_number(self, error: ForgeError, *, head_branch: str,
                         base_branch: str) -> int | None:
        # 409 "pull request already exists for these targets [id: …, issue_id: …, …]": the
        # issue_id there is a database id, not the pull request's index, so look it up.
        if error.forge_status != 409:
            return None
        existing = self._find(head_branch, state="open", base_branch=base_branch)
        return existing.number if existing else None

    def _parse(self, item: Any) -> PullRequest:
        data = as_dict(item)
        number = as_int(data.get("number"))
        if number is None:
            raise ForgeError("Gitea answered a pull request without a number.", kind="server")
        head = as_dict(data.get("head"))
        return PullRequest(number=number, url=as_str(data.get("html_url")), state=_state(data),
                           head_branch=as_str(head.get("ref")), head_sha=as_str(head.get("sha")))

    @staticmethod
    def webhook_verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """X-Gitea-Signature (Forgejo: X-Forgejo-Signature) is the hex HMAC-SHA256 of the body."""
        folded = lower_headers(headers)
        signature = folded.get("x-gitea-signature") or folded.get("x-forgejo-signature") or ""
        if not secret or not signature:
            return False
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature.strip().lower(), expected)

    @staticmethod
    def webhook_parse(*, headers: Mapping[str, str], body: bytes) -> ForgeEvent:
        folded = lower_headers(headers)
        event = folded.get("x-gitea-event") or folded.get("x-forgejo-event") or ""
        payload = load_payload(body)
        action = as_str(payload.get("action"))
        action = _ACTIONS.get(action, action)
        if event == "pull_request":
            pull = as_dict(payload.get("pull_request"))
            return ForgeEvent(
                kind="pull_request", action=action,
                pull_request_number=as_int(payload.get("number")) or as_int(pull.get("number")),
                pull_request_state=_state(pull),
                head_branch=as_str(as_dict(pull.get("head")).get("ref")),
                labels=label_names(pull.get("labels")))
        if event in ("issues", "issue_label"):
            issue = as_dict(payload.get("issue"))
            return ForgeEvent(
                kind="issue", action=action, issue_number=as_int(issue.get("number")),
                issue_title=as_str(issue.get("title")), issue_body=as_str(issue.get("body")),
                issue_url=as_str(issue.get("html_url")), labels=label_names(issue.get("labels")))
        return ForgeEvent(kind="other", action=action)

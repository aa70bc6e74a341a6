"""GitHub (github.com and GitHub Enterprise Server) through its REST API."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import httpx

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

API_VERSION = "2022-11-28"


class GitHub(Forge):
    """Pull requests of owner/repo; the API is https://api.github.com or https://HOST/api/v3."""

    kind = "github"
    display_name = "GitHub"
    needed_scopes = '"repo" (classic token) or "Pull requests: write" (fine-grained)'
    page_size = 100

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION}

    def _pulls(self, *more: str | int) -> str:
        return self._path("repos", *self._owner_repo, "pulls", *more)

    def _find(self, head_branch: str, *, state: str, base_branch: str = ""
              ) -> PullRequest | None:
        owner, _ = self._owner_repo
        params = {"head": f"{owner}:{head_branch}", "state": state, "sort": "created",
                  "direction": "desc", "per_page": self.page_size}
        found = [item for item in self._paginate(self._pulls(), params)
                 if as_str(as_dict(item.get("head")).get("ref")) == head_branch]
        return self._parse(self._newest(found, "number")) if found else None

    def _create_body(self, *, head_branch: str, base_branch: str, title: str,
                     body: str) -> dict[str, Any]:
        return {"title": title, "head": head_branch, "base": base_branch, "body": body}

    def _existing_number(self, error: ForgeError, *, head_branch: str,
                         base_branch: str) -> int | None:
        # 422 "A pull request already exists for owner:branch."
        if not (error.forge_status == 422 and "already exists" in error.message):
            return None
        existing = self._find(head_branch, state="open")
        return existing.number if existing else None

    def _is_rate_limited(self, response: httpx.Response) -> bool:
        # GitHub answers an exhausted primary limit with 403 and remaining 0, a secondary
        # limit with 403/429 and Retry-After.
        if response.status_code == 429:
            return True
        return response.status_code == 403 and (
            response.headers.get("x-ratelimit-remaining") == "0"
            or "retry-after" in response.headers
            or "rate limit" in response.text.lower())

    def _parse(self, item: Any) -> PullRequest:
        data = as_dict(item)
        number = as_int(data.get("number"))
        if number is None:
            raise ForgeError("GitHub answered a pull request without a number.", kind="server")
        head = as_dict(data.get("head"))
        if data.get("merged") is True or data.get("merged_at"):
            state = "merged"
        elif data.get("state") == "closed":
            state = "closed"
        else:
            state = "open"
        return PullRequest(number=number, url=as_str(data.get("html_url")), state=state,
                           head_branch=as_str(head.get("ref")), head_sha=as_str(head.get("sha")))

    @staticmethod
    def webhook_verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """X-Hub-Signature-256 is "sha256=" + the HMAC-SHA256 of the body with the secret."""
        signature = lower_headers(headers).get("x-hub-signature-256", "")
        if not secret or not signature.startswith("sha256="):
            return False
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature[len("sha256="):].strip().lower(), expected)

    @staticmethod
    def webhook_parse(*, headers: Mapping[str, str], body: bytes) -> ForgeEvent:
        event = lower_headers(headers).get("x-github-event", "")
        payload = load_payload(body)
        action = as_str(payload.get("action"))
        if event == "ping":
            return ForgeEvent(kind="ping")
        if event == "pull_request":
            pull = as_dict(payload.get("pull_request"))
            if pull.get("merged") is True or pull.get("merged_at"):
                state = "merged"
            else:
                state = "closed" if pull.get("state") == "closed" else "open"
            return ForgeEvent(
                kind="pull_request", action=action,
                pull_request_number=as_int(payload.get("number")) or as_int(pull.get("number")),
                pull_request_state=state, head_branch=as_str(as_dict(pull.get("head")).get("ref")),
                labels=label_names(pull.get("labels")))
        if event == "issues":
            issue = as_dict(payload.get("issue"))
            return ForgeEvent(
                kind="issue", action=action, issue_number=as_int(issue.get("number")),
                issue_title=as_str(issue.get("title")), issue_body=as_str(issue.get("body")),
                issue_url=as_str(issue.get("html_url")), labels=label_names(issue.get("labels")))
        return ForgeEvent(kind="other", action=action)

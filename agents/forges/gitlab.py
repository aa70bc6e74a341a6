"""GitLab (gitlab.com and self-managed) merge requests through its REST API v4."""

from __future__ import annotations

import hmac
import re
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

# GitLab's words for an issue's or merge request's action, in GitHub's (ForgeEvent.action).
_ACTIONS = {"open": "opened", "close": "closed", "reopen": "reopened", "update": "edited",
            "merge": "closed", "approved": "approved", "unapproved": "unapproved"}
_EXISTING = re.compile(r"already exists.*!(\d+)")


def _state(value: Any) -> str:
    return {"merged": "merged", "closed": "closed"}.get(as_str(value), "open")


class GitLab(Forge):
    """Merge requests of group/…/project; the API is https://HOST/api/v4."""

    kind = "gitlab"
    display_name = "GitLab"
    needed_scopes = '"api"'
    page_size = 100

    def _auth_headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self._token}

    update_method = "PUT"

    def _pulls(self, *more: str | int) -> str:
        # The project is named by its URL-encoded path (group%2Fproject), as GitLab documents.
        return self._path("projects", self.repository_path, "merge_requests", *more)

    def _find(self, head_branch: str, *, state: str, base_branch: str = ""
              ) -> PullRequest | None:
        params = {"source_branch": head_branch, "state": state, "order_by": "created_at",
                  "sort": "desc", "per_page": self.page_size}
        found = [item for item in self._paginate(self._pulls(), params)
                 if as_str(item.get("source_branch")) == head_branch]
        return self._parse(self._newest(found, "iid")) if found else None

    def _create_body(self, *, head_branch: str, base_branch: str, title: str,
                     body: str) -> dict[str, Any]:
        return {"source_branch": head_branch, "target_branch": base_branch, "title": title,
                "description": body}

    def _update_body(self, *, title: str, body: str) -> dict[str, Any]:
        return {"title": title, "description": body}

    def _existing_number(self, error: ForgeError, *, head_branch: str,
                         base_branch: str) -> int | None:
        if error.forge_status != 409:
            return None
        # "Another open merge request already exists for this source branch: !7"
        named = _EXISTING.search(error.message)
        if named:
            return int(named.group(1))
        existing = self._find(head_branch, state="opened")
        return existing.number if existing else None

    def _next_page(self, response: httpx.Response) -> str | None:
        link = super()._next_page(response)
        if link:
            return link
        # Keyset-less listings without a Link header still carry X-Next-Page.
        following = response.headers.get("x-next-page", "").strip()
        if not following.isdigit():
            return None
        return str(response.request.url.copy_merge_params({"page": following}))

    def _parse(self, item: Any) -> PullRequest:
        data = as_dict(item)
        number = as_int(data.get("iid"))
        if number is None:
            raise ForgeError("GitLab answered a merge request without an iid.", kind="server")
        return PullRequest(number=number, url=as_str(data.get("web_url")),
                           state=_state(data.get("state")),
                           head_branch=as_str(data.get("source_branch")),
                           head_sha=as_str(data.get("sha")))

    @staticmethod
    def webhook_verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """GitLab sends the secret itself in X-Gitlab-Token (no signature of the body)."""
        token = lower_headers(headers).get("x-gitlab-token", "")
        return bool(secret) and hmac.compare_digest(token.encode(), secret.encode())

    @staticmethod
    def webhook_parse(*, headers: Mapping[str, str], body: bytes) -> ForgeEvent:
        event = lower_headers(headers).get("x-gitlab-event", "")
        payload = load_payload(body)
        attributes = as_dict(payload.get("object_attributes"))
        action = as_str(attributes.get("action"))
        labels = label_names(payload.get("labels"), key="title")
        if event == "Merge Request Hook":
            return ForgeEvent(
                kind="pull_request", action=_ACTIONS.get(action, action),
                pull_request_number=as_int(attributes.get("iid")),
                pull_request_state=_state(attributes.get("state")),
                head_branch=as_str(attributes.get("source_branch")), labels=labels)
        if event == "Issue Hook":
            changes = as_dict(as_dict(payload.get("changes")).get("labels"))
            before = set(label_names(changes.get("previous"), key="title"))
            after = set(label_names(changes.get("current"), key="title"))
            named = _ACTIONS.get(action, action)
            if action == "update" and after - before:
                named = "labeled"
            elif action == "update" and before - after:
                named = "unlabeled"
            return ForgeEvent(
                kind="issue", action=named, issue_number=as_int(attributes.get("iid")),
                issue_title=as_str(attributes.get("title")),
                issue_body=as_str(attributes.get("description")),
                issue_url=as_str(attributes.get("url")), labels=labels)
        return ForgeEvent(kind="other", action=action)

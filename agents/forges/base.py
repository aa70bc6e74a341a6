"""What every forge adapter shares: the records, the error, and one careful HTTP client.

The adapters speak the forges' REST APIs over httpx directly rather than through a vendor SDK:
the caller hands in the transport (which pins the resolved address against SSRF), and
redirects are refused, never followed, so a token cannot be carried to another host.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from agents.tls import tls_context
from haao.errors import ApplicationError
from haao.ssrf import PinnedTransport

ErrorKind = Literal["auth", "not_found", "rate_limited", "unreachable", "conflict", "invalid",
                    "server"]
MAX_PAGES = 10
USER_AGENT = "HAAO"
_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class PullRequest:
    """A pull (merge) request as HAAO needs it, whatever the forge."""

    number: int
    url: str  # the web page a person opens (html_url / web_url)
    state: str  # "open" | "merged" | "closed"
    head_branch: str
    head_sha: str


@dataclass(frozen=True)
class ForgeEvent:
    """What a webhook said, forge-independent; `action` uses GitHub's words (opened, labeled…)."""

    kind: str  # "pull_request" | "issue" | "ping" | "other"
    pull_request_number: int | None = None
    pull_request_state: str = ""  # open | merged | closed
    head_branch: str = ""
    issue_number: int | None = None
    issue_title: str = ""
    issue_body: str = ""
    issue_url: str = ""
    labels: tuple[str, ...] = ()
    action: str = ""


class ForgeError(ApplicationError):
    """A forge refused or could not answer; the message is for people and never holds the token.

    `forge_status` is the forge's HTTP status (0 when it could not be reached), `retry_after`
    the seconds a rate limit asks to wait, `kind` one of ErrorKind. HAAO's own answer to a
    caller who meets it is 502: the forge, not the caller, failed."""

    code = "forge_error"
    status = 502

    def __init__(self, message: str, *, kind: ErrorKind, status: int = 0,
                 retry_after: float | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={"kind": kind, "status": status, **(details or {})})
        self.kind = kind
        self.forge_status = status
        self.retry_after = retry_after


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names folded to lower case, so lookups ignore how the sender spelled them."""
    return {str(key).lower(): str(value) for key, value in headers.items()}


def load_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a webhook body; ForgeError(kind="invalid") for anything else."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ForgeError("The webhook body is not valid JSON.", kind="invalid") from None
    if not isinstance(payload, dict):
        raise ForgeError("The webhook body is not a JSON object.", kind="invalid")
    return payload


def as_int(value: Any) -> int | None:
    """An int from a payload field, or None when it is missing or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def label_names(labels: Any, key: str = "name") -> tuple[str, ...]:
    """Names of a payload's label objects (GitHub/Gitea "name", GitLab "title")."""
    if not isinstance(labels, list):
        return ()
    return tuple(as_str(label.get(key)) for label in labels
                 if isinstance(label, dict) and as_str(label.get(key)))


def without_credentials(url: str) -> str:
    """url without user:password@, query or fragment: safe to show in a message."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return "(an address that is not a valid URL)"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def retry_after_seconds(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (seconds or a date) or a reset epoch (x-ratelimit-reset)."""
    now = time.time() if now is None else now
    raw = headers.get("retry-after", "").strip()
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - now)
        except (TypeError, ValueError):
            pass
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        reset = headers.get(name, "").strip()
        if reset.isdigit():
            return max(0.0, float(reset) - now)
    return None


class Forge:
    """One repository on one forge, reached through its REST API with a token."""

    kind: ClassVar[str] = ""
    display_name: ClassVar[str] = "The forge"
    # Scopes the admin should check when the forge refuses the token.
    needed_scopes: ClassVar[str] = ""
    page_size: ClassVar[int] = 50

    def __init__(self, *, api_url: str, repository_path: str, token: str,
                 transport: httpx.BaseTransport | None = None, timeout: float = 20.0,
                 organization_id: Any = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.repository_path = repository_path.strip("/")
        self._token = token
        self._timeout = timeout
        # No redirects, and every connection to the address the SSRF guard checked.
        self._client = httpx.Client(
            transport=transport or PinnedTransport(organization_id=organization_id,
                                                   verify=tls_context()),
            timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.api_url} {self.repository_path}>"

    def close(self) -> None:
        """Close the connections this adapter keeps open."""
        self._client.close()

    def __enter__(self) -> Forge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Operations: one shape for every forge; subclasses give paths, bodies and parsing ------

    update_method: ClassVar[str] = "PATCH"

    def _pulls(self, *more: str | int) -> str:
        """The path of the forge's pull (merge) requests, or of one of them."""
        raise NotImplementedError

    @property
    def _owner_repo(self) -> tuple[str, str]:
        """owner and repo of an owner/repo path (GitHub, Gitea)."""
        owner, _, repo = self.repository_path.partition("/")
        if not owner or not repo or "/" in repo:
            raise ForgeError(f"A {self.display_name} repository is named owner/repo, not "
                             f"{self.repository_path!r}.", kind="invalid")
        return owner, repo

    def _find(self, head_branch: str, *, state: str, base_branch: str = ""
              ) -> PullRequest | None:
        """The newest pull request whose head is head_branch, in `state`, or None."""
        raise NotImplementedError

    def _create_body(self, *, head_branch: str, base_branch: str, title: str,
                     body: str) -> dict[str, Any]:
        raise NotImplementedError

    def _update_body(self, *, title: str, body: str) -> dict[str, Any]:
        return {"title": title, "body": body}

    def _existing_number(self, error: ForgeError, *, head_branch: str,
                         base_branch: str) -> int | None:
        """The open pull request a refused creation names (or finds), if that was the cause."""
        raise NotImplementedError

    def _parse(self, item: Any) -> PullRequest:
        raise NotImplementedError

    def pull_request_for(self, *, head_branch: str) -> PullRequest | None:
        """The newest pull request (any state) whose head is head_branch, or None."""
        return self._find(head_branch, state="all")

    def pull_request_open(self, *, head_branch: str, base_branch: str, title: str,
                          body: str) -> PullRequest:
        """Open a pull request; when the forge says one exists already, update that one."""
        try:
            response = self._request("POST", self._pulls(), json_body=self._create_body(
                head_branch=head_branch, base_branch=base_branch, title=title, body=body))
        except ForgeError as error:
            number = self._existing_number(error, head_branch=head_branch,
                                           base_branch=base_branch)
            if number is None:
                raise
            return self.pull_request_update(number=number, title=title, body=body)
        return self._parse(self._json(response))

    def pull_request_update(self, *, number: int, title: str, body: str) -> PullRequest:
        """Set a pull request's title and description."""
        response = self._request(self.update_method, self._pulls(number),
                                 json_body=self._update_body(title=title, body=body))
        return self._parse(self._json(response))

    def pull_request_get(self, *, number: int) -> PullRequest:
        """One pull request by its number (GitLab: iid, Gitea: index)."""
        return self._parse(self._json(self._request("GET", self._pulls(number))))

    @staticmethod
    def _newest(found: list[Any], number: str) -> Any:
        return max(found, key=lambda item: as_int(as_dict(item).get(number)) or 0)

    @staticmethod
    def webhook_verify(*, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """True when the delivery is signed with secret."""
        raise NotImplementedError

    @staticmethod
    def webhook_parse(*, headers: Mapping[str, str], body: bytes) -> ForgeEvent:
        """The event of a delivery."""
        raise NotImplementedError

    # HTTP -------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _path(self, *segments: str | int) -> str:
        """An API path from segments, each percent-encoded whole (a "/" inside becomes %2F)."""
        return "/" + "/".join(quote(str(segment), safe="") for segment in segments)

    def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                 json_body: Mapping[str, Any] | None = None, url: str | None = None,
                 ) -> httpx.Response:
        """One call; any answer but 2xx becomes a ForgeError. `url` overrides path (a next page)."""
        target = url or self.api_url + path
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json",
                   **self._auth_headers()}
        try:
            response = self._client.request(method, target, params=params, json=json_body,
                                            headers=headers)
        except httpx.TimeoutException:
            raise ForgeError(
                f"{self.display_name} at {without_credentials(self.api_url)} did not answer "
                f"within {self._timeout:.0f} s.", kind="unreachable") from None
        except httpx.InvalidURL:
            raise ForgeError(f"The {self.display_name} API URL {without_credentials(target)!r} "
                             "is not a valid URL.", kind="invalid") from None
        except httpx.HTTPError as failure:
            reason = self._scrub(type(failure).__name__)
            raise ForgeError(
                f"{self.display_name} at {without_credentials(self.api_url)} could not be "
                f"reached ({reason}). Check the API URL and the network.",
                kind="unreachable") from None
        if response.is_success:
            return response
        raise self._error_for(response)

    def _paginate(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Items of a listing, following rel="next" on the API's own host, MAX_PAGES at most."""
        response = self._request("GET", path, params=params)
        origin = urlsplit(self.api_url)[:2]
        for page in range(MAX_PAGES):
            items = self._json(response)
            if not isinstance(items, list):
                raise ForgeError(f"{self.display_name} answered a listing that is not a list.",
                                 kind="server", status=response.status_code)
            yield from (item for item in items if isinstance(item, dict))
            following = self._next_page(response)
            if not following or page == MAX_PAGES - 1:
                return
            # Never send the token to another host, whatever a Link header says.
            if urlsplit(following)[:2] != origin:
                return
            response = self._request("GET", "", url=following)

    def _next_page(self, response: httpx.Response) -> str | None:
        link = response.links.get("next", {}).get("url")
        return str(link) if link else None

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ForgeError(f"{self.display_name} answered something that is not JSON "
                             f"(HTTP {response.status_code}).", kind="server",
                             status=response.status_code) from None

    def _scrub(self, text: str) -> str:
        """text without the token (a forge may echo it) and cut to a readable length."""
        if self._token:
            text = text.replace(self._token, "***")
        return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "…"

    def _forge_message(self, response: httpx.Response) -> str:
        """The human part of an error body (message / error / errors), scrubbed."""
        try:
            body = response.json()
        except ValueError:
            return self._scrub(response.text.strip())
        parts: list[str] = []
        if isinstance(body, dict):
            for key in ("message", "error", "errors"):
                value = body.get(key)
                if isinstance(value, str):
                    parts.append(value)
                elif isinstance(value, list):
                    parts += [item if isinstance(item, str) else as_str(as_dict(item).get(
                        "message")) or json.dumps(item) for item in value]
                elif isinstance(value, dict):
                    parts.append(json.dumps(value))
        elif isinstance(body, str):
            parts.append(body)
        return self._scrub("; ".join(part for part in parts if part))

    def _is_rate_limited(self, response: httpx.Response) -> bool:
        return response.status_code == 429

    def _error_for(self, response: httpx.Response) -> ForgeError:
        """The ForgeError an unsuccessful answer means."""
        status = response.status_code
        where = without_credentials(self.api_url)
        said = self._forge_message(response)
        suffix = f" It said: {said}" if said else ""
        if 300 <= status < 400:
            location = response.headers.get("location", "")
            target = without_credentials(str(response.url.join(location))) if location else "?"
            return ForgeError(
                f"{self.display_name} at {where} answered with a redirect (HTTP {status}) to "
                f"{target}. HAAO does not follow redirects: set the API URL to the address "
                "that answers directly.", kind="invalid", status=status,
                details={"location": target})
        if self._is_rate_limited(response):
            wait = retry_after_seconds(response.headers)
            when = f" Try again in {wait:.0f} s." if wait is not None else ""
            return ForgeError(f"{self.display_name} rate limit is exhausted.{when}",
                              kind="rate_limited", status=status, retry_after=wait)
        if status in (401, 403):
            return ForgeError(
                f"{self.display_name} at {where} refused the token (HTTP {status}). Check that "
                f"it is valid and has the {self.needed_scopes} scope for "
                f"{self.repository_path}.{suffix}", kind="auth", status=status)
        if status == 404:
            return ForgeError(
                f"{self.display_name} at {where} has no {self.repository_path} or the item asked "
                f"for (HTTP 404), or the token may not see it.", kind="not_found", status=status)
        if status == 409:
            return ForgeError(f"{self.display_name} reported a conflict (HTTP 409).{suffix}",
                              kind="conflict", status=status)
        if status >= 500:
            return ForgeError(f"{self.display_name} at {where} failed (HTTP {status}); try "
                              "again later.", kind="server", status=status)
        return ForgeError(f"{self.display_name} refused the request (HTTP {status}).{suffix}",
                          kind="invalid", status=status)

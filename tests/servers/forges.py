"""Protocol-level GitHub, GitLab and Gitea servers for tests, backed by real bare repositories.

Each fake serves the REST calls HAAO makes about pull (merge) requests, with the forge's own
paths, field names, status codes, error bodies, pagination and rate-limit answers, on
127.0.0.1. Branches live in a GitHTTPServer's bare repositories, so merging a pull request
really merges its head into its base (merge-tree, commit-tree, update-ref)::

    with GitHTTPServer() as git, FakeGitHub(git) as github:
        github.create_repo("acme/app", files={"README.md": "hi\\n"})
        github.api_url                      # http://127.0.0.1:PORT/api/v3 (a GitHub Enterprise)
        github.token                        # accepted as "Bearer …" or "token …"
        github.add_webhook(url, secret="s") # deliveries are POSTed and signed like GitHub's
        github.merge(1)                     # "the team merged it": a merge commit on main
        github.open_issue("Add CSV export", "…", ["haao"])
        github.requests[-1].json            # what HAAO sent (secrets left out of headers)
        github.rate_limited = True          # every API call answers the rate-limit reply
        github.redirect_to = "http://…"     # every API call answers 301 to there

Sources of the shapes: GitHub's OpenAPI description (github/rest-api-description), GitLab's
REST documentation for merge requests and webhooks, Gitea's swagger (templates/swagger).
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from tests.servers.git_http import GIT, GitHTTPServer, branch_sha, run_git

SECRET_HEADERS = {"authorization", "private-token", "cookie", "x-gitlab-token"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RecordedRequest:
    """One API request a fake forge received; secret headers are replaced by "[redacted]"."""

    method: str
    path: str  # as sent, still percent-encoded (GitLab's group%2Fproject)
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any


@dataclass(frozen=True)
class Delivery:
    """One webhook a fake forge POSTed (status 0 when the receiver could not be reached)."""

    url: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Pull:
    """A pull request in the fake's memory, in neutral terms; each forge renders its own JSON."""

    number: int
    repo: str
    title: str
    body: str
    head: str
    base: str
    state: str = "open"  # open | closed
    merged: bool = False
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    merged_at: str | None = None
    closed_at: str | None = None
    merge_commit_sha: str | None = None
    head_sha_at_close: str | None = None


@dataclass
class Issue:
    number: int
    repo: str
    title: str
    body: str
    labels: list[str]
    state: str = "open"
    created_at: str = field(default_factory=now_iso)


class MergeConflict(Exception):
    """The head branch does not merge cleanly into the base branch."""


def merge_branches(repo_dir: Path, *, head: str, base: str, message: str) -> str:
    """Merge head into base inside a bare repository with a merge commit; return its sha."""
    base_sha, head_sha = branch_sha(repo_dir, base), branch_sha(repo_dir, head)
    if base_sha is None or head_sha is None:
        raise MergeConflict(f"branch {base if base_sha is None else head} is missing")
    result = subprocess.run(
        [GIT, "-c", "safe.directory=*", "merge-tree", "--write-tree", base_sha, head_sha],
        cwd=repo_dir, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise MergeConflict(result.stdout.strip() or result.stderr.strip())
    tree = result.stdout.split()[0]
    sha = run_git(["commit-tree", tree, "-p", base_sha, "-p", head_sha, "-m", message],
                  cwd=repo_dir).strip()
    run_git(["update-ref", f"refs/heads/{base}", sha, base_sha], cwd=repo_dir)
    return sha


def is_ancestor(repo_dir: Path, older: str, newer: str) -> bool:
    result = subprocess.run(
        [GIT, "-c", "safe.directory=*", "merge-base", "--is-ancestor", older, newer],
        cwd=repo_dir, capture_output=True, timeout=60, check=False)
    return result.returncode == 0


class FakeForge:
    """What the three fakes share: the HTTP server, the records, pagination and webhooks."""

    kind: ClassVar[str] = ""
    api_prefix: ClassVar[str] = ""
    default_page_size: ClassVar[int] = 30
    max_page_size: ClassVar[int] = 100

    def __init__(self, git: GitHTTPServer, *, token: str = "forge-token-0123456789",  # noqa: S107
                 webhook_secret: str = "webhook-secret") -> None:  # noqa: S107
        self.git = git
        self.token = token
        self.tokens = {token}
        self.webhook_secret = webhook_secret
        self.requests: list[RecordedRequest] = []
        self.deliveries: list[Delivery] = []
        # Every event built, delivered or not: (headers, body), for webhook_verify/parse tests.
        self.events: list[tuple[dict[str, str], bytes]] = []
        self.webhooks: list[tuple[str, str]] = []
        self.pulls: dict[str, list[Pull]] = {}
        self.issues: dict[str, list[Issue]] = {}
        self.rate_limited = False
        self.rate_limit_reset_in = 60
        self.redirect_to: str | None = None
        self.repo = ""
        self._counters: dict[tuple[str, str], int] = {}
        self._lock = threading.RLock()
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Life cycle -------------------------------------------------------------------------

    def start(self) -> FakeForge:
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"forge": self})
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"fake-{self.kind}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self) -> FakeForge:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start() the fake forge first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.base_url + self.api_prefix

    # Test-side helpers ------------------------------------------------------------------

    def create_repo(self, name: str, **kwargs: Any) -> Path:
        """A bare repository on the git server that this forge knows; the default repo after."""
        path = self.git.create_repo(name, **kwargs)
        self.repo = self.repo or name
        return path

    def add_webhook(self, url: str, *, secret: str | None = None) -> None:
        """POST every later event to url, signed with secret (default: webhook_secret)."""
        self.webhooks.append((url, self.webhook_secret if secret is None else secret))

    def create_pull(self, *, head: str, base: str = "main", title: str = "A change",
                    body: str = "", repo: str | None = None) -> Pull:
        """Record a pull request directly, as if someone opened it in the web interface."""
        with self._lock:
            pull = Pull(number=self._next_number(repo or self.repo, "pull"),
                        repo=repo or self.repo, title=title, body=body, head=head, base=base)
            self.pulls.setdefault(pull.repo, []).append(pull)
            return pull

    def pull(self, number: int, *, repo: str | None = None) -> Pull:
        return next(p for p in self.pulls.get(repo or self.repo, []) if p.number == number)

    def merge(self, number: int, *, repo: str | None = None) -> str:
        """Merge the pull request into its base in the bare repository; send the webhook."""
        sha = self._merge(self.pull(number, repo=repo))
        self._flush()
        return sha

    def close(self, number: int, *, repo: str | None = None) -> None:
        """Close the pull request without merging; send the webhook."""
        pull = self.pull(number, repo=repo)
        with self._lock:
            pull.state, pull.closed_at, pull.updated_at = "closed", now_iso(), now_iso()
            pull.head_sha_at_close = self.git.branch_sha(pull.repo, pull.head)
        self.send_event(*self.pull_event(pull, "closed"))

    def open_issue(self, title: str, body: str, labels: list[str] | tuple[str, ...] = (),
                   *, repo: str | None = None) -> Issue:
        """Record an issue and send the webhooks the forge sends when one is opened."""
        with self._lock:
            issue = Issue(number=self._next_number(repo or self.repo, "issue"),
                          repo=repo or self.repo, title=title, body=body, labels=list(labels))
            self.issues.setdefault(issue.repo, []).append(issue)
        for event in self.issue_events(issue, "opened"):
            self.send_event(*event)
        return issue

    def label_issue(self, number: int, label: str, *, repo: str | None = None) -> None:
        """Add a label to an issue and send the "labeled" webhook."""
        issue = next(i for i in self.issues[repo or self.repo] if i.number == number)
        issue.labels.append(label)
        for event in self.issue_events(issue, "labeled", label=label):
            self.send_event(*event)

    def _flush(self) -> None:
        """Send the events queued while the lock was held."""
        with self._lock:
            pending, self._pending = self._pending, []
        for event in pending:
            self.send_event(*event)

    def send_event(self, event: str, payload: dict[str, Any]) -> list[Delivery]:
        """Build the signed delivery of event and POST it to every webhook."""
        sent = []
        for url, secret in self.webhooks or [("", self.webhook_secret)]:
            headers, body = self.webhook_request(event, payload, secret=secret)
            self.events.append((headers, body))
            if not url:
                continue
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                status = 0
            delivery = Delivery(url, headers, body, status)
            self.deliveries.append(delivery)
            sent.append(delivery)
        return sent

    # Per forge --------------------------------------------------------------------------

    def webhook_request(self, event: str, payload: dict[str, Any], *,
                        secret: str | None = None) -> tuple[dict[str, str], bytes]:
        """The headers and body this forge would POST for event, signed with secret."""
        raise NotImplementedError

    def pull_event(self, pull: Pull, action: str) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def issue_events(self, issue: Issue, action: str,
                     label: str = "") -> list[tuple[str, dict[str, Any]]]:
        raise NotImplementedError

    def route(self, method: str, segments: list[str], query: dict[str, str], body: Any,
              path: str) -> Reply:
        raise NotImplementedError

    def authenticate(self, headers: dict[str, str], query: dict[str, str]) -> Reply | None:
        """None when the request carries a valid token, else the forge's refusal."""
        raise NotImplementedError

    def rate_limit_reply(self) -> Reply:
        raise NotImplementedError

    # Shared machinery -------------------------------------------------------------------

    def _next_number(self, repo: str, what: str) -> int:
        key = (repo, what if self.kind == "gitlab" else "shared")
        self._counters[key] = self._counters.get(key, 0) + 1
        return self._counters[key]

    def _repo_exists(self, name: str) -> bool:
        try:
            return (self.git.repo_path(name) / "HEAD").exists()
        except ValueError:
            return False

    def _merge(self, pull: Pull) -> str:
        with self._lock:
            if pull.state != "open":
                raise MergeConflict("the pull request is not open")
            message = f"Merge pull request #{pull.number} from {pull.head}\n\n{pull.title}"
            head_sha = self.git.branch_sha(pull.repo, pull.head)
            sha = merge_branches(self.git.repo_path(pull.repo), head=pull.head, base=pull.base,
                                 message=message)
            pull.state, pull.merged, pull.merge_commit_sha = "closed", True, sha
            pull.merged_at = pull.closed_at = pull.updated_at = now_iso()
            pull.head_sha_at_close = head_sha
            # Sent once the lock is released: a receiver may call the API back meanwhile.
            self._pending.append(self.pull_event(pull, "closed"))
        return sha

    def head_sha(self, pull: Pull) -> str:
        if pull.state == "closed" and pull.head_sha_at_close:
            return pull.head_sha_at_close
        return self.git.branch_sha(pull.repo, pull.head) or ""

    def page(self, items: list[Any], query: dict[str, str], path: str, *,
             size_param: str = "per_page") -> tuple[list[Any], dict[str, str], dict[str, int]]:
        """One page of items, plus a Link header and the numbers (page, per_page, total…)."""
        try:
            per_page = int(query.get(size_param) or self.default_page_size)
            page = max(1, int(query.get("page") or 1))
        except ValueError:
            per_page, page = self.default_page_size, 1
        per_page = max(1, min(per_page, self.max_page_size))
        total = len(items)
        last = max(1, -(-total // per_page))
        chosen = items[(page - 1) * per_page: page * per_page]

        def link_to(number: int) -> str:
            return f"{self.base_url}{path}?{urlencode({**query, 'page': number})}"

        links = []
        if page < last:
            links += [f'<{link_to(page + 1)}>; rel="next"', f'<{link_to(last)}>; rel="last"']
        if page > 1:
            links += [f'<{link_to(1)}>; rel="first"', f'<{link_to(page - 1)}>; rel="prev"']
        headers = {"Link": ", ".join(links)} if links else {}
        numbers = {"page": page, "per_page": per_page, "total": total, "last": last}
        return chosen, headers, numbers

    def handle(self, method: str, raw_path: str, headers: dict[str, str],
               raw_body: bytes) -> Reply:
        split = urlsplit(raw_path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode("utf-8", "replace")
        visible = {key: ("[redacted]" if key in SECRET_HEADERS else value)
                   for key, value in headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(method, split.path, query, visible, body))
        if self.redirect_to is not None:
            return Reply(301, {"message": "Moved Permanently"},
                         {"Location": self.redirect_to})
        if not split.path.startswith(self.api_prefix + "/"):
            return Reply(404, {"message": "Not Found"})
        refusal = self.authenticate(headers, query)
        if refusal is not None:
            return refusal
        if self.rate_limited:
            return self.rate_limit_reply()
        segments = [unquote(part) for part in split.path[len(self.api_prefix) + 1:].split("/")]
        with self._lock:
            reply = self.route(method, segments, query, body, split.path)
        self._flush()
        return reply

    def signature(self, body: bytes, secret: str) -> str:
        return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    forge: FakeForge
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            reply = self.forge.handle(self.command, self.path, headers, raw)
        except Exception as error:  # a bug in the fake must show, not hang the client
            reply = Reply(500, {"message": f"fake forge failed: {error!r}"})
        if isinstance(reply.body, bytes):
            payload = reply.body
            content_type = "text/plain"
        elif reply.body is None:
            payload, content_type = b"", ""
        else:
            payload = json.dumps(reply.body).encode()
            content_type = "application/json; charset=utf-8"
        self.send_response(reply.status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


def bearer_or(prefix: str, headers: dict[str, str]) -> str:
    """The token of an Authorization header "Bearer X" or "<prefix> X", else ""."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("bearer", prefix) else ""



# GitHub -----------------------------------------------------------------------------------

GITHUB_DOCS = "https://docs.github.com/rest"


class FakeGitHub(FakeForge):
    """GitHub's REST API for pull requests, served like GitHub Enterprise under /api/v3."""

    kind = "github"
    api_prefix = "/api/v3"
    default_page_size = 30
    max_page_size = 100
    rate_limit_status = 403  # GitHub's primary limit; set 429 for the secondary one

    def authenticate(self, headers: dict[str, str], query: dict[str, str]) -> Reply | None:
        token = bearer_or("token", headers)
        if token in self.tokens:
            return None
        if not headers.get("authorization"):
            return Reply(401, {"message": "Requires authentication",
                               "documentation_url": GITHUB_DOCS, "status": "401"})
        return Reply(401, {"message": "Bad credentials", "documentation_url": GITHUB_DOCS,
                           "status": "401"})

    def rate_limit_reply(self) -> Reply:
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                   "x-ratelimit-used": "5000", "x-ratelimit-resource": "core",
                   "x-ratelimit-reset": str(int(time.time()) + self.rate_limit_reset_in)}
        if self.rate_limit_status == 429:
            headers["retry-after"] = str(self.rate_limit_reset_in)
        return Reply(self.rate_limit_status, {
            "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub "
                       "Support for help, please include the request ID.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            "status": str(self.rate_limit_status)}, headers)

    def not_found(self) -> Reply:
        return Reply(404, {"message": "Not Found", "documentation_url": GITHUB_DOCS,
                           "status": "404"})

    def invalid(self, *errors: dict[str, Any]) -> Reply:
        return Reply(422, {"message": "Validation Failed", "errors": list(errors),
                           "documentation_url": GITHUB_DOCS, "status": "422"})

    def route(self, method: str, segments: list[str], query: dict[str, str], body: Any,
              path: str) -> Reply:
        if len(segments) < 4 or segments[0] != "repos" or segments[3] != "pulls":
            return self.not_found()
        repo = f"{segments[1]}/{segments[2]}"
        if not self._repo_exists(repo):
            return self.not_found()
        rest = segments[4:]
        data = body if isinstance(body, dict) else {}
        if not rest and method == "GET":
            return self.list_pulls(repo, query, path)
        if not rest and method == "POST":
            return self.create(repo, data)
        if not rest or not rest[0].isdigit():
            return self.not_found()
        pull = next((p for p in self.pulls.get(repo, []) if p.number == int(rest[0])), None)
        if pull is None:
            return self.not_found()
        if len(rest) == 1 and method == "GET":
            return Reply(200, self.render(pull))
        if len(rest) == 1 and method == "PATCH":
            for key in ("title", "body", "base"):
                if isinstance(data.get(key), str):
                    setattr(pull, key, data[key])
            if data.get("state") in ("open", "closed") and not pull.merged:
                pull.state = data["state"]
                pull.closed_at = now_iso() if pull.state == "closed" else None
            pull.updated_at = now_iso()
            return Reply(200, self.render(pull))
        if rest[1:] == ["merge"] and method == "PUT":
            if data.get("sha") and data["sha"] != self.head_sha(pull):
                return Reply(409, {"message": "Head branch was modified. Review and try the "
                                   "merge again.", "documentation_url": GITHUB_DOCS,
                                   "status": "409"})
            try:
                sha = self._merge(pull)
            except MergeConflict:
                return Reply(405, {"message": "Pull Request is not mergeable",
                                   "documentation_url": GITHUB_DOCS, "status": "405"})
            return Reply(200, {"sha": sha, "merged": True,
                               "message": "Pull Request successfully merged"})
        return self.not_found()

    def list_pulls(self, repo: str, query: dict[str, str], path: str) -> Reply:
        state = query.get("state", "open")
        owner = repo.split("/")[0]
        pulls = [p for p in self.pulls.get(repo, []) if state == "all" or p.state == state]
        if query.get("head"):
            pulls = [p for p in pulls if f"{owner}:{p.head}" == query["head"]]
        if query.get("base"):
            pulls = [p for p in pulls if p.base == query["base"]]
        descending = query.get("direction", "desc" if query.get("sort", "created") == "created"
                               else "asc") == "desc"
        pulls.sort(key=lambda p: p.number, reverse=descending)
        chosen, headers, _ = self.page(pulls, query, path)
        return Reply(200, [self.render(p) for p in chosen], headers)

    def create(self, repo: str, data: dict[str, Any]) -> Reply:
        owner = repo.split("/")[0]
        for name in ("head", "base"):
            if not isinstance(data.get(name), str) or not data[name]:
                return self.invalid({"resource": "PullRequest", "field": name,
                                     "code": "missing_field"})
        head = data["head"].split(":", 1)[-1]
        base = data["base"]
        for name, branch in (("head", head), ("base", base)):
            if self.git.branch_sha(repo, branch) is None:
                return self.invalid({"resource": "PullRequest", "field": name,
                                     "code": "invalid"})
        if any(p.state == "open" and p.head == head and p.base == base
               for p in self.pulls.get(repo, [])):
            return self.invalid({"resource": "PullRequest", "code": "custom",
                                 "message": f"A pull request already exists for {owner}:{head}."})
        repo_dir = self.git.repo_path(repo)
        if is_ancestor(repo_dir, f"refs/heads/{head}", f"refs/heads/{base}"):
            return self.invalid({"resource": "PullRequest", "code": "custom",
                                 "message": f"No commits between {base} and {head}"})
        pull = self.create_pull(head=head, base=base, title=str(data.get("title") or ""),
                                body=str(data.get("body") or ""), repo=repo)
        return Reply(201, self.render(pull),
                     {"Location": f"{self.api_url}/repos/{repo}/pulls/{pull.number}"})

    def render(self, pull: Pull) -> dict[str, Any]:
        owner, name = pull.repo.split("/", 1)
        api = f"{self.api_url}/repos/{pull.repo}"
        repository = {"id": 1, "name": name, "full_name": pull.repo,
                      "owner": {"login": owner, "id": 1, "type": "Organization"},
                      "html_url": f"{self.base_url}/{pull.repo}", "private": True}
        user = {"login": "octocat", "id": 1, "type": "User"}
        return {
            "url": f"{api}/pulls/{pull.number}", "id": 1000 + pull.number,
            "node_id": f"PR_{pull.number}", "html_url": f"{self.base_url}/{pull.repo}/pull/"
            f"{pull.number}", "diff_url": f"{self.base_url}/{pull.repo}/pull/{pull.number}.diff",
            "issue_url": f"{api}/issues/{pull.number}", "number": pull.number,
            "state": pull.state, "locked": False, "title": pull.title, "user": user,
            "body": pull.body, "labels": [], "created_at": pull.created_at,
            "updated_at": pull.updated_at, "closed_at": pull.closed_at,
            "merged_at": pull.merged_at, "merge_commit_sha": pull.merge_commit_sha,
            "draft": False,
            "head": {"label": f"{owner}:{pull.head}", "ref": pull.head,
                     "sha": self.head_sha(pull), "user": user, "repo": repository},
            "base": {"label": f"{owner}:{pull.base}", "ref": pull.base,
                     "sha": self.git.branch_sha(pull.repo, pull.base) or "", "user": user,
                     "repo": repository},
            "author_association": "MEMBER", "merged": pull.merged,
            "mergeable": None if pull.merged else True, "mergeable_state": "clean",
            "merged_by": user if pull.merged else None,
        }

    def webhook_request(self, event: str, payload: dict[str, Any], *,
                        secret: str | None = None) -> tuple[dict[str, str], bytes]:
        body = json.dumps(payload).encode()
        key = (self.webhook_secret if secret is None else secret).encode()
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + self.signature(body, key.decode()),
        }, body

    def _envelope(self, repo: str) -> dict[str, Any]:
        owner, name = repo.split("/", 1)
        return {"repository": {"id": 1, "name": name, "full_name": repo,
                               "html_url": f"{self.base_url}/{repo}",
                               "owner": {"login": owner, "id": 1}},
                "sender": {"login": "octocat", "id": 1, "type": "User"}}

    def pull_event(self, pull: Pull, action: str) -> tuple[str, dict[str, Any]]:
        return "pull_request", {"action": action, "number": pull.number,
                                "pull_request": self.render(pull), **self._envelope(pull.repo)}

    def render_issue(self, issue: Issue) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{issue.repo}"
        return {"url": f"{api}/issues/{issue.number}", "id": 2000 + issue.number,
                "number": issue.number, "title": issue.title, "body": issue.body,
                "html_url": f"{self.base_url}/{issue.repo}/issues/{issue.number}",
                "state": issue.state, "labels": [{"id": i + 1, "name": label, "color": "ededed"}
                                                 for i, label in enumerate(issue.labels)],
                "user": {"login": "octocat", "id": 1}, "created_at": issue.created_at,
                "updated_at": now_iso(), "author_association": "MEMBER"}

    def issue_events(self, issue: Issue, action: str,
                     label: str = "") -> list[tuple[str, dict[str, Any]]]:
        envelope = self._envelope(issue.repo)
        if action == "labeled":
            return [("issues", {"action": "labeled", "issue": self.render_issue(issue),
                                "label": {"name": label, "color": "ededed"}, **envelope})]
        # Opening with labels sends "opened", then one "labeled" per label.
        events = [("issues", {"action": action, "issue": self.render_issue(issue), **envelope})]
        events += [("issues", {"action": "labeled", "issue": self.render_issue(issue),
                               "label": {"name": name, "color": "ededed"}, **envelope})
                   for name in issue.labels]
        return events

    def ping(self) -> None:
        """Send the ping GitHub sends when a webhook is created."""
        self.send_event("ping", {"zen": "Keep it logically awesome.", "hook_id": 1,
                                 "hook": {"type": "Repository", "id": 1, "active": True,
                                          "events": ["issues", "pull_request"]},
                                 **self._envelope(self.repo)})


# GitLab -----------------------------------------------------------------------------------

_GITLAB_STATES = {"open": "opened", "closed": "closed"}


class FakeGitLab(FakeForge):
    """GitLab's REST API v4 for merge requests; projects by id or URL-encoded path."""

    kind = "gitlab"
    api_prefix = "/api/v4"
    default_page_size = 20
    max_page_size = 100
    # GitLab leaves Link (and X-Total) out of some listings; False plays that.
    link_header = True

    def __init__(self, git: GitHTTPServer, **kwargs: Any) -> None:
        super().__init__(git, **kwargs)
        self.project_ids: dict[str, int] = {}

    def project_id(self, repo: str | None = None) -> int:
        """The numeric id of a project (assigned on first use)."""
        name = repo or self.repo
        return self.project_ids.setdefault(name, len(self.project_ids) + 1)

    def authenticate(self, headers: dict[str, str], query: dict[str, str]) -> Reply | None:
        token = headers.get("private-token") or bearer_or("bearer", headers)
        if token in self.tokens:
            return None
        return Reply(401, {"message": "401 Unauthorized"})

    def rate_limit_reply(self) -> Reply:
        reset = int(time.time()) + self.rate_limit_reset_in
        return Reply(429, b"Retry later\n", {
            "Retry-After": str(self.rate_limit_reset_in),
            "RateLimit-Name": "throttle_authenticated_api",
            "RateLimit-Limit": "2000", "RateLimit-Observed": "2001", "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(reset),
            "RateLimit-ResetTime": datetime.fromtimestamp(reset, UTC).strftime(
                "%a, %d %b %Y %H:%M:%S GMT")})

    def _project(self, ident: str) -> str | None:
        if ident.isdigit():
            return next((name for name, number in self.project_ids.items()
                         if number == int(ident)), None)
        if self._repo_exists(ident):
            self.project_id(ident)
            return ident
        return None

    def route(self, method: str, segments: list[str], query: dict[str, str], body: Any,
              path: str) -> Reply:
        if len(segments) < 3 or segments[0] != "projects":
            return Reply(404, {"error": "404 Not Found"})
        repo = self._project(segments[1])
        if repo is None:
            return Reply(404, {"message": "404 Project Not Found"})
        if segments[2] != "merge_requests":
            return Reply(404, {"error": "404 Not Found"})
        rest = segments[3:]
        data = body if isinstance(body, dict) else {}
        if not rest and method == "GET":
            return self.list_mrs(repo, query, path)
        if not rest and method == "POST":
            return self.create(repo, data)
        if not rest[0].isdigit():
            return Reply(404, {"error": "404 Not Found"})
        pull = next((p for p in self.pulls.get(repo, []) if p.number == int(rest[0])), None)
        if pull is None:
            return Reply(404, {"message": "404 Not found"})
        if len(rest) == 1 and method == "GET":
            return Reply(200, self.render(pull))
        if len(rest) == 1 and method == "PUT":
            if isinstance(data.get("title"), str):
                pull.title = data["title"]
            if isinstance(data.get("description"), str):
                pull.body = data["description"]
            if isinstance(data.get("target_branch"), str):
                pull.base = data["target_branch"]
            if data.get("state_event") == "close" and not pull.merged:
                pull.state, pull.closed_at = "closed", now_iso()
            elif data.get("state_event") == "reopen" and not pull.merged:
                pull.state, pull.closed_at = "open", None
            pull.updated_at = now_iso()
            return Reply(200, self.render(pull))
        if rest[1:] == ["merge"] and method == "PUT":
            if pull.state != "open":
                return Reply(405, {"message": "405 Method Not Allowed"})
            if data.get("sha") and data["sha"] != self.head_sha(pull):
                return Reply(409, {"message": "SHA does not match HEAD of source branch: "
                                              f"{self.head_sha(pull)}"})
            try:
                self._merge(pull)
            except MergeConflict:
                return Reply(422, {"message": "Branch cannot be merged"})
            return Reply(200, self.render(pull))
        return Reply(404, {"error": "404 Not Found"})

    def list_mrs(self, repo: str, query: dict[str, str], path: str) -> Reply:
        wanted = query.get("state", "all")
        pulls = [p for p in self.pulls.get(repo, []) if wanted == "all" or self.state(p) == wanted]
        if query.get("source_branch"):
            pulls = [p for p in pulls if p.head == query["source_branch"]]
        if query.get("target_branch"):
            pulls = [p for p in pulls if p.base == query["target_branch"]]
        pulls.sort(key=lambda p: p.number, reverse=query.get("sort", "desc") == "desc")
        chosen, headers, numbers = self.page(pulls, query, path)
        if not self.link_header:
            headers = {}
        page, last = numbers["page"], numbers["last"]
        headers.update({
            "X-Page": str(page), "X-Per-Page": str(numbers["per_page"]),
            "X-Next-Page": str(page + 1) if page < last else "",
            "X-Prev-Page": str(page - 1) if page > 1 else ""})
        if self.link_header:
            headers.update({"X-Total": str(numbers["total"]), "X-Total-Pages": str(last)})
        return Reply(200, [self.render(p) for p in chosen], headers)

    def create(self, repo: str, data: dict[str, Any]) -> Reply:
        for name in ("source_branch", "target_branch", "title"):
            if not isinstance(data.get(name), str) or not data[name]:
                return Reply(400, {"error": f"{name} is missing"})
        head, base = data["source_branch"], data["target_branch"]
        for branch in (head, base):
            if self.git.branch_sha(repo, branch) is None:
                return Reply(400, {"message": {"validate_branches": [
                    f"Source branch \"{branch}\" does not exist" if branch == head else
                    f"Target branch \"{branch}\" does not exist"]}})
        existing = next((p for p in self.pulls.get(repo, [])
                         if p.state == "open" and p.head == head and p.base == base), None)
        if existing is not None:
            return Reply(409, {"message": ["Another open merge request already exists for this "
                                           f"source branch: !{existing.number}"]})
        pull = self.create_pull(head=head, base=base, title=data["title"],
                                body=str(data.get("description") or ""), repo=repo)
        return Reply(201, self.render(pull))

    def state(self, pull: Pull) -> str:
        return "merged" if pull.merged else _GITLAB_STATES[pull.state]

    def render(self, pull: Pull) -> dict[str, Any]:
        author = {"id": 1, "username": "root", "name": "Administrator", "state": "active"}
        project_id = self.project_id(pull.repo)
        return {
            "id": 5000 + pull.number, "iid": pull.number, "project_id": project_id,
            "title": pull.title, "description": pull.body, "state": self.state(pull),
            "created_at": pull.created_at, "updated_at": pull.updated_at,
            "merged_at": pull.merged_at, "closed_at": None if pull.merged else pull.closed_at,
            "merged_by": author if pull.merged else None, "merge_user": author if pull.merged
            else None, "target_branch": pull.base, "source_branch": pull.head,
            "source_project_id": project_id, "target_project_id": project_id, "author": author,
            "labels": [], "draft": False, "work_in_progress": False,
            "merge_status": "can_be_merged", "detailed_merge_status": "mergeable"
            if pull.state == "open" else "not_open", "sha": self.head_sha(pull),
            "merge_commit_sha": pull.merge_commit_sha, "squash_commit_sha": None,
            "reference": f"!{pull.number}",
            "references": {"short": f"!{pull.number}", "full": f"{pull.repo}!{pull.number}"},
            "web_url": f"{self.base_url}/{pull.repo}/-/merge_requests/{pull.number}",
        }

    def webhook_request(self, event: str, payload: dict[str, Any], *,
                        secret: str | None = None) -> tuple[dict[str, str], bytes]:
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitLab/17.5.0",
            "X-Gitlab-Event": event,
            "X-Gitlab-Token": self.webhook_secret if secret is None else secret,
            "X-Gitlab-Instance": self.base_url,
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        }, json.dumps(payload).encode()

    def _envelope(self, repo: str) -> dict[str, Any]:
        return {"user": {"id": 1, "name": "Administrator", "username": "root"},
                "project": {"id": self.project_id(repo), "name": repo.rsplit("/", 1)[-1],
                            "path_with_namespace": repo,
                            "web_url": f"{self.base_url}/{repo}",
                            "default_branch": "main"}}

    def pull_event(self, pull: Pull, action: str) -> tuple[str, dict[str, Any]]:
        gitlab_action = "merge" if pull.merged else {"closed": "close", "opened": "open"}.get(
            action, action)
        attributes = {**self.render(pull), "url": self.render(pull)["web_url"],
                      "action": gitlab_action,
                      "last_commit": {"id": self.head_sha(pull), "title": pull.title}}
        return "Merge Request Hook", {"object_kind": "merge_request",
                                      "event_type": "merge_request", **self._envelope(pull.repo),
                                      "object_attributes": attributes, "labels": [],
                                      "changes": {"state_id": {"previous": 1, "current": 3}}}

    def issue_events(self, issue: Issue, action: str,
                     label: str = "") -> list[tuple[str, dict[str, Any]]]:
        labels = [{"id": i + 1, "title": name, "color": "#428BCA", "type": "ProjectLabel"}
                  for i, name in enumerate(issue.labels)]
        changes: dict[str, Any] = {}
        if action == "labeled":
            changes = {"labels": {"previous": [item for item in labels if item["title"] != label],
                                  "current": labels}}
        attributes = {
            "id": 7000 + issue.number, "iid": issue.number, "title": issue.title,
            "description": issue.body, "state": "opened", "created_at": issue.created_at,
            "updated_at": now_iso(), "project_id": self.project_id(issue.repo),
            "url": f"{self.base_url}/{issue.repo}/-/issues/{issue.number}",
            "action": "open" if action == "opened" else "update", "labels": labels}
        return [("Issue Hook", {"object_kind": "issue", "event_type": "issue",
                                **self._envelope(issue.repo), "object_attributes": attributes,
                                "labels": labels, "changes": changes})]


# Gitea ------------------------------------------------------------------------------------


class FakeGitea(FakeForge):
    """Gitea's (and Forgejo's) REST API v1 for pull requests."""

    kind = "gitea"
    api_prefix = "/api/v1"
    default_page_size = 30
    max_page_size = 50

    def swagger(self) -> str:
        return f"{self.base_url}/api/swagger"

    def authenticate(self, headers: dict[str, str], query: dict[str, str]) -> Reply | None:
        token = bearer_or("token", headers) or query.get("token", "")
        if token in self.tokens:
            return None
        if not token:
            return Reply(401, {"message": "token is required", "url": self.swagger()})
        return Reply(401, {"message": "user does not exist [uid: 0, name: ]",
                           "url": self.swagger()})

    def rate_limit_reply(self) -> Reply:
        # Gitea has no API rate limit of its own; the reverse proxy in front answers this.
        return Reply(429, b"Too Many Requests\n", {"Retry-After": str(self.rate_limit_reset_in)})

    def not_found(self) -> Reply:
        return Reply(404, {"errors": None, "message": "The target couldn't be found.",
                           "url": self.swagger()})

    def route(self, method: str, segments: list[str], query: dict[str, str], body: Any,
              path: str) -> Reply:
        if len(segments) < 4 or segments[0] != "repos" or segments[3] != "pulls":
            return self.not_found()
        repo = f"{segments[1]}/{segments[2]}"
        if not self._repo_exists(repo):
            return self.not_found()
        rest = segments[4:]
        data = body if isinstance(body, dict) else {}
        if not rest and method == "GET":
            return self.list_pulls(repo, query, path)
        if not rest and method == "POST":
            return self.create(repo, data)
        if not rest[0].isdigit():
            return self.not_found()
        pull = next((p for p in self.pulls.get(repo, []) if p.number == int(rest[0])), None)
        if pull is None:
            return self.not_found()
        if len(rest) == 1 and method == "GET":
            return Reply(200, self.render(pull))
        if len(rest) == 1 and method == "PATCH":
            for key in ("title", "body", "base"):
                if isinstance(data.get(key), str):
                    setattr(pull, key, data[key])
            if data.get("state") in ("open", "closed") and not pull.merged:
                pull.state = data["state"]
                pull.closed_at = now_iso() if pull.state == "closed" else None
            pull.updated_at = now_iso()
            return Reply(201, self.render(pull))
        if rest[1:] == ["merge"] and method == "POST":
            if pull.merged:
                return Reply(405, {"message": "The PR is already merged", "url": self.swagger()})
            if pull.state != "open":
                return Reply(405, {"message": "The PR is closed", "url": self.swagger()})
            if data.get("head_commit_id") and data["head_commit_id"] != self.head_sha(pull):
                return Reply(409, {"message": "head out of date", "url": self.swagger()})
            try:
                self._merge(pull)
            except MergeConflict:
                return Reply(409, {"message": "Merge conflicts", "url": self.swagger()})
            return Reply(200)
        return self.not_found()

    def list_pulls(self, repo: str, query: dict[str, str], path: str) -> Reply:
        state = query.get("state", "open")
        pulls = [p for p in self.pulls.get(repo, []) if state == "all" or p.state == state]
        pulls.sort(key=lambda p: p.number, reverse=query.get("sort") != "oldest")
        chosen, headers, numbers = self.page(pulls, query, path, size_param="limit")
        headers["X-Total-Count"] = str(numbers["total"])
        return Reply(200, [self.render(p) for p in chosen], headers)

    def create(self, repo: str, data: dict[str, Any]) -> Reply:
        head, base = str(data.get("head") or ""), str(data.get("base") or "")
        if not head or not base or not data.get("title"):
            return Reply(422, {"message": "[Head]: Required; [Base]: Required; [Title]: Required",
                               "url": self.swagger()})
        if self.git.branch_sha(repo, head) is None or self.git.branch_sha(repo, base) is None:
            return self.not_found()
        existing = next((p for p in self.pulls.get(repo, [])
                         if p.state == "open" and p.head == head and p.base == base), None)
        if existing is not None:
            return Reply(409, {"message": "pull request already exists for these targets "
                                          f"[id: {existing.number + 100}, issue_id: "
                                          f"{existing.number + 200}, head_repo_id: 1, "
                                          f"base_repo_id: 1, head_branch: {head}, "
                                          f"base_branch: {base}]", "url": self.swagger()})
        pull = self.create_pull(head=head, base=base, title=str(data["title"]),
                                body=str(data.get("body") or ""), repo=repo)
        return Reply(201, self.render(pull))

    def render(self, pull: Pull) -> dict[str, Any]:
        owner, name = pull.repo.split("/", 1)
        user = {"id": 1, "login": "gitea_admin", "username": "gitea_admin"}
        repository = {"id": 1, "name": name, "full_name": pull.repo, "owner": {"login": owner},
                      "html_url": f"{self.base_url}/{pull.repo}"}
        web = f"{self.base_url}/{pull.repo}/pulls/{pull.number}"
        return {
            "id": 100 + pull.number, "url": web, "number": pull.number, "user": user,
            "title": pull.title, "body": pull.body, "labels": [], "state": pull.state,
            "is_locked": False, "comments": 0, "html_url": web, "diff_url": web + ".diff",
            "patch_url": web + ".patch", "mergeable": not pull.merged, "merged": pull.merged,
            "merged_at": pull.merged_at, "merge_commit_sha": pull.merge_commit_sha,
            "merged_by": user if pull.merged else None, "allow_maintainer_edit": False,
            "base": {"label": pull.base, "ref": pull.base, "repo_id": 1, "repo": repository,
                     "sha": self.git.branch_sha(pull.repo, pull.base) or ""},
            "head": {"label": pull.head, "ref": pull.head, "repo_id": 1, "repo": repository,
                     "sha": self.head_sha(pull)},
            "merge_base": self.git.branch_sha(pull.repo, pull.base) or "",
            "created_at": pull.created_at, "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
        }

    def webhook_request(self, event: str, payload: dict[str, Any], *,
                        secret: str | None = None) -> tuple[dict[str, str], bytes]:
        body = json.dumps(payload).encode()
        key = self.webhook_secret if secret is None else secret
        signature = self.signature(body, key)
        delivery = str(uuid.uuid4())
        # The event type header tells label changes apart; X-Gitea-Event says "issues".
        event_type = "issue_label" if payload.get("action") in ("label_updated",
                                                                 "label_cleared") else event
        # Gitea also sends Gogs' and GitHub's headers, for receivers written for those.
        return {
            "Content-Type": "application/json",
            "User-Agent": "Go-http-client/1.1",
            "X-Gitea-Event": event, "X-Gitea-Event-Type": event_type,
            "X-Gitea-Delivery": delivery, "X-Gitea-Signature": signature,
            "X-Gogs-Event": event, "X-Gogs-Event-Type": event_type,
            "X-Gogs-Delivery": delivery, "X-Gogs-Signature": signature,
            "X-GitHub-Event": event, "X-GitHub-Event-Type": event_type,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature": "sha1=" + hmac.new(key.encode(), body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + signature,
        }, body

    def _envelope(self, repo: str) -> dict[str, Any]:
        owner, name = repo.split("/", 1)
        return {"repository": {"id": 1, "name": name, "full_name": repo,
                               "owner": {"login": owner},
                               "html_url": f"{self.base_url}/{repo}"},
                "sender": {"id": 1, "login": "gitea_admin", "username": "gitea_admin"}}

    def pull_event(self, pull: Pull, action: str) -> tuple[str, dict[str, Any]]:
        return "pull_request", {"action": action, "number": pull.number,
                                "pull_request": self.render(pull), **self._envelope(pull.repo)}

    def render_issue(self, issue: Issue) -> dict[str, Any]:
        web = f"{self.base_url}/{issue.repo}/issues/{issue.number}"
        return {"id": 300 + issue.number, "url": web, "html_url": web, "number": issue.number,
                "user": {"id": 1, "login": "gitea_admin"}, "title": issue.title,
                "body": issue.body, "labels": [{"id": i + 1, "name": name, "color": "ededed"}
                                               for i, name in enumerate(issue.labels)],
                "state": issue.state, "created_at": issue.created_at, "updated_at": now_iso(),
                "pull_request": None}

    def issue_events(self, issue: Issue, action: str,
                     label: str = "") -> list[tuple[str, dict[str, Any]]]:
        envelope = self._envelope(issue.repo)
        labelled = ("issues", {"action": "label_updated", "number": issue.number,
                               "issue": self.render_issue(issue), **envelope})
        if action == "labeled":
            return [labelled]
        opened = ("issues", {"action": action, "number": issue.number,
                             "issue": self.render_issue(issue), **envelope})
        return [opened, labelled] if issue.labels else [opened]

"""The forge adapters against protocol-level GitHub, GitLab and Gitea servers on loopback."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from agents.forges import Forge, ForgeError, GitHub, forge_for
from tests.servers.forges import FakeForge, FakeGitea, FakeGitHub, FakeGitLab
from tests.servers.git_http import GitHTTPServer
from tickets.repositories import default_api_url, forge_defaults

BRANCH = "haao/PAY-12"


@dataclass
class Case:
    fake: FakeForge
    forge: Forge

    def branch(self, name: str = BRANCH, text: str = "change\n") -> str:
        """A branch with one commit on top of main in the bare repository; its sha."""
        return self.fake.git.commit(self.fake.repo, branch=name,
                                    files={f"{name.replace('/', '-')}.txt": text})


@pytest.fixture(autouse=True)
def loopback_allowed(settings: Any) -> None:
    """The fake forges listen on loopback, which the operator must allow (haao/ssrf.py)."""
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]


def adapter(fake: FakeForge, *, token: str | None = None, api_url: str | None = None) -> Forge:
    return forge_for(kind=fake.kind, api_url=api_url or fake.api_url,
                     repository_path=fake.repo, token=fake.token if token is None else token)


@pytest.fixture(params=["github", "gitlab", "gitea"])
def case(request: pytest.FixtureRequest, git_http_server: GitHTTPServer) -> Iterator[Case]:
    fake_class = {"github": FakeGitHub, "gitlab": FakeGitLab, "gitea": FakeGitea}[request.param]
    with fake_class(git_http_server) as fake:
        fake.create_repo("acme/app")
        forge = adapter(fake)
        yield Case(fake, forge)
        forge.close()


def api_calls(fake: FakeForge) -> list[tuple[str, str]]:
    return [(request.method, request.path) for request in fake.requests]


# Pull requests -----------------------------------------------------------------------------


def test_it_opens_a_pull_request_a_person_can_open(case: Case) -> None:
    sha = case.branch()
    pull = case.forge.pull_request_open(head_branch=BRANCH, base_branch="main",
                                        title="PAY-12: CSV export", body="What and why.")

    assert pull.state == "open"
    assert pull.head_branch == BRANCH
    assert pull.head_sha == sha
    assert pull.url.startswith(case.fake.base_url + "/acme/app/")
    assert pull.url.endswith(f"/{pull.number}")
    stored = case.fake.pull(pull.number)
    assert (stored.title, stored.body, stored.head, stored.base) == (
        "PAY-12: CSV export", "What and why.", BRANCH, "main")
    sent = case.fake.requests[-1]
    assert sent.method == "POST"
    assert sent.headers["user-agent"] == "HAAO"
    assert sent.headers.get("authorization", sent.headers.get("private-token")) == "[redacted]"


def test_an_existing_pull_request_is_updated_instead_of_duplicated(case: Case) -> None:
    case.branch()
    first = case.forge.pull_request_open(head_branch=BRANCH, base_branch="main",
                                         title="Old title", body="Old body")
    again = case.forge.pull_request_open(head_branch=BRANCH, base_branch="main",
                                         title="New title", body="New body")

    assert again.number == first.number
    assert len(case.fake.pulls["acme/app"]) == 1
    stored = case.fake.pull(first.number)
    assert (stored.title, stored.body) == ("New title", "New body")
    assert [method for method, _ in api_calls(case.fake)][-1] in ("PATCH", "PUT")


def test_pull_request_for_finds_the_newest_one_across_pages(case: Case) -> None:
    case.branch()
    case.branch("other")
    for attempt in range(3):
        old = case.fake.create_pull(head=BRANCH, title=f"Try {attempt}")
        case.fake.close(old.number)
    for _ in range(4):
        case.fake.create_pull(head="other")
    newest = case.fake.create_pull(head=BRANCH, title="Last try")
    for _ in range(4):
        case.fake.create_pull(head="other")
    case.fake.max_page_size = 2

    found = case.forge.pull_request_for(head_branch=BRANCH)

    assert found is not None
    assert (found.number, found.state) == (newest.number, "open")
    assert case.forge.pull_request_for(head_branch="never-pushed") is None
    assert len([call for call in api_calls(case.fake) if call[0] == "GET"]) > 2


def test_pull_request_state_follows_the_team_merging_it(case: Case) -> None:
    head_sha = case.branch(text="the feature\n")
    pull = case.forge.pull_request_open(head_branch=BRANCH, base_branch="main", title="T",
                                        body="B")
    case.fake.merge(pull.number)

    merged = case.forge.pull_request_get(number=pull.number)
    assert merged.state == "merged"
    assert merged.head_sha == head_sha
    git = case.fake.git
    assert git.read_file("acme/app", branch="main", path="haao-PAY-12.txt") == "the feature\n"
    assert case.forge.pull_request_for(head_branch=BRANCH) == merged


def test_a_closed_pull_request_reads_as_closed(case: Case) -> None:
    case.branch()
    pull = case.forge.pull_request_open(head_branch=BRANCH, base_branch="main", title="T",
                                        body="B")
    case.fake.close(pull.number)
    assert case.forge.pull_request_get(number=pull.number).state == "closed"


def test_a_missing_pull_request_is_not_found(case: Case) -> None:
    with pytest.raises(ForgeError) as missing:
        case.forge.pull_request_get(number=999)
    assert (missing.value.kind, missing.value.forge_status) == ("not_found", 404)


def test_gitlab_names_the_project_by_its_url_encoded_path(fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.git.commit("acme/app", branch=BRANCH, files={"a.txt": "a\n"})
    adapter(fake_gitlab).pull_request_open(head_branch=BRANCH, base_branch="main", title="T",
                                           body="B")
    assert fake_gitlab.requests[-1].path == "/api/v4/projects/acme%2Fapp/merge_requests"
    assert fake_gitlab.requests[-1].json == {"source_branch": BRANCH, "target_branch": "main",
                                             "title": "T", "description": "B"}


def test_gitlab_follows_x_next_page_without_a_link_header(fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.git.commit("acme/app", branch=BRANCH, files={"a.txt": "a\n"})
    for _ in range(3):
        pull = fake_gitlab.create_pull(head=BRANCH)
        fake_gitlab.close(pull.number)
    fake_gitlab.max_page_size = 1
    fake_gitlab.link_header = False
    found = adapter(fake_gitlab).pull_request_for(head_branch=BRANCH)
    assert found is not None and found.number == 3
    assert [r.query.get("page") for r in fake_gitlab.requests] == [None, "2", "3"]


# Failures ----------------------------------------------------------------------------------


def test_a_wrong_token_is_an_auth_error_that_names_scopes_not_the_token(case: Case) -> None:
    forge = adapter(case.fake, token="ghp_wrongTOKENvalue123")
    with pytest.raises(ForgeError) as refused:
        forge.pull_request_for(head_branch=BRANCH)
    error = refused.value
    assert (error.kind, error.forge_status, error.code) == ("auth", 401, "forge_error")
    assert "scope" in error.message
    assert "ghp_wrongTOKENvalue123" not in str(error) + repr(error.details)


@pytest.mark.parametrize("status", [403, 429])
def test_github_rate_limits_give_the_seconds_to_wait(fake_github: FakeGitHub,
                                                     status: int) -> None:
    fake_github.rate_limited = True
    fake_github.rate_limit_status = status
    with pytest.raises(ForgeError) as limited:
        adapter(fake_github).pull_request_get(number=1)
    assert limited.value.kind == "rate_limited"
    assert limited.value.retry_after is not None and 55 <= limited.value.retry_after <= 61


def test_gitlab_and_gitea_rate_limits_give_retry_after(case: Case) -> None:
    case.fake.rate_limited = True
    with pytest.raises(ForgeError) as limited:
        case.forge.pull_request_for(head_branch=BRANCH)
    assert (limited.value.kind, limited.value.forge_status) == (
        "rate_limited", 403 if case.fake.kind == "github" else 429)
    assert limited.value.retry_after is not None and 55 <= limited.value.retry_after <= 61
    assert "Try again in" in limited.value.message


def test_a_redirect_is_refused_not_followed(case: Case) -> None:
    case.fake.redirect_to = "http://user:pw@127.0.0.1:9/elsewhere?access_token=abc"
    with pytest.raises(ForgeError) as redirected:
        case.forge.pull_request_get(number=1)
    error = redirected.value
    assert (error.kind, error.forge_status) == ("invalid", 301)
    assert "http://127.0.0.1:9/elsewhere" in error.message
    assert "abc" not in error.message and "pw" not in error.message
    assert len(case.fake.requests) == 1


def test_an_unreachable_forge_says_so(git_http_server: GitHTTPServer) -> None:
    with FakeGitea(git_http_server) as fake:
        fake.create_repo("acme/app")
        api_url = fake.api_url
    forge = forge_for(kind="gitea", api_url=api_url, repository_path="acme/app",
                      token="secret-token")
    with pytest.raises(ForgeError) as down:
        forge.pull_request_get(number=1)
    assert (down.value.kind, down.value.forge_status) == ("unreachable", 0)
    assert api_url in down.value.message


def test_a_slow_forge_is_unreachable_after_the_timeout() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    forge = forge_for(kind="github", api_url="https://ghe.example/api/v3",
                      repository_path="acme/app", token="t0ken",
                      transport=httpx.MockTransport(hang))
    with pytest.raises(ForgeError) as slow:
        forge.pull_request_get(number=1)
    assert slow.value.kind == "unreachable"
    assert "did not answer" in slow.value.message


def test_a_forge_failure_is_a_server_error_and_never_echoes_the_token() -> None:
    token = "glpat-SECRETsecret0123"

    def echo(request: httpx.Request) -> httpx.Response:
        status = 502 if request.method == "GET" else 422
        return httpx.Response(status, json={"message": f"bad request with token {token}"})

    forge = forge_for(kind="gitlab", api_url="https://gitlab.example/api/v4",
                      repository_path="g/p", token=token, transport=httpx.MockTransport(echo))
    with pytest.raises(ForgeError) as failed:
        forge.pull_request_get(number=1)
    assert (failed.value.kind, failed.value.forge_status) == ("server", 502)
    with pytest.raises(ForgeError) as invalid:
        forge.pull_request_update(number=1, title="t", body="b")
    assert invalid.value.kind == "invalid"
    assert "bad request with token ***" in invalid.value.message
    assert token not in invalid.value.message + failed.value.message


def test_a_pagination_link_to_another_host_is_not_followed() -> None:
    seen: list[str] = []

    def listing(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=[], headers={
            "Link": '<https://evil.example/api/v3/repos/o/r/pulls?page=2>; rel="next"'})

    forge = forge_for(kind="github", api_url="https://ghe.example/api/v3",
                      repository_path="o/r", token="t", transport=httpx.MockTransport(listing))
    assert forge.pull_request_for(head_branch="b") is None
    assert len(seen) == 1


# Webhooks ----------------------------------------------------------------------------------


def test_a_labelled_issue_webhook_is_verified_and_parsed(case: Case) -> None:
    issue = case.fake.open_issue("Add CSV export", "Users want CSV.", ["haao", "feature"])
    headers, body = case.fake.events[-1]
    forge_class = type(case.forge)

    assert forge_class.webhook_verify(headers=headers, body=body,
                                      secret=case.fake.webhook_secret)
    event = forge_class.webhook_parse(headers=headers, body=body)
    assert event.kind == "issue"
    assert event.issue_number == issue.number
    assert (event.issue_title, event.issue_body) == ("Add CSV export", "Users want CSV.")
    assert event.issue_url.endswith(f"/acme/app/issues/{issue.number}") or \
        event.issue_url.endswith(f"/acme/app/-/issues/{issue.number}")
    assert set(event.labels) == {"haao", "feature"}
    assert event.action in ("labeled", "opened")


def test_a_merged_pull_request_webhook_says_merged(case: Case) -> None:
    case.branch()
    pull = case.fake.create_pull(head=BRANCH)
    case.fake.merge(pull.number)
    headers, body = case.fake.events[-1]
    event = type(case.forge).webhook_parse(headers=headers, body=body)
    assert (event.kind, event.pull_request_number, event.pull_request_state,
            event.head_branch, event.action) == ("pull_request", pull.number, "merged", BRANCH,
                                                 "closed")
    assert type(case.forge).webhook_verify(headers=headers, body=body,
                                           secret=case.fake.webhook_secret)


def test_a_webhook_with_a_wrong_secret_or_a_changed_body_is_rejected(case: Case) -> None:
    case.fake.open_issue("Title", "Body", [])
    headers, body = case.fake.events[-1]
    verify = type(case.forge).webhook_verify
    assert not verify(headers=headers, body=body, secret="another-secret")
    assert not verify(headers=headers, body=body, secret="")
    if case.fake.kind != "gitlab":  # GitLab sends the secret itself, not a signature
        assert not verify(headers=headers, body=body.replace(b"Title", b"Tampered"),
                          secret=case.fake.webhook_secret)
    assert not verify(headers={}, body=body, secret=case.fake.webhook_secret)
    # Header names are case-insensitive.
    lowered = {key.lower(): value for key, value in headers.items()}
    assert verify(headers=lowered, body=body, secret=case.fake.webhook_secret)


def test_a_malformed_webhook_body_is_invalid(case: Case) -> None:
    case.fake.open_issue("Title", "Body", [])
    headers, _ = case.fake.events[-1]
    for junk in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(ForgeError) as bad:
            type(case.forge).webhook_parse(headers=headers, body=junk)
        assert bad.value.kind == "invalid"


def test_github_ping_and_unknown_events() -> None:
    ping = GitHub.webhook_parse(headers={"X-GitHub-Event": "ping"}, body=b'{"zen": "z"}')
    other = GitHub.webhook_parse(headers={"X-GitHub-Event": "star"},
                                 body=b'{"action": "created"}')
    assert ping.kind == "ping"
    assert (other.kind, other.action) == ("other", "created")



class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_fake_forge_posts_signed_webhooks_to_a_receiver(fake_github: FakeGitHub) -> None:
    handler = type("Receiver", (_Receiver,), {"received": []})
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        fake_github.add_webhook(f"http://127.0.0.1:{receiver.server_address[1]}/hooks/github",
                                secret="s3cret")
        fake_github.open_issue("From GitHub", "Body", ["haao"])
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert [delivery.status for delivery in fake_github.deliveries] == [204, 204]
    headers, body = handler.received[-1]
    assert GitHub.webhook_verify(headers=headers, body=body, secret="s3cret")
    assert json.loads(body)["action"] == "labeled"
    assert GitHub.webhook_parse(headers=headers, body=body).labels == ("haao",)


# Defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("https://github.com/acme/app.git", ("github", "https://api.github.com", "acme/app")),
    ("https://github.com/acme/app", ("github", "https://api.github.com", "acme/app")),
    ("git@github.com:acme/app.git", ("github", "https://api.github.com", "acme/app")),
    ("https://gitlab.com/group/sub/project.git",
     ("gitlab", "https://gitlab.com/api/v4", "group/sub/project")),
    ("ssh://git@gitlab.example.com/g/sub/p.git", ("", "https://gitlab.example.com", "g/sub/p")),
    ("https://gitea.example.com/o/r.git", ("", "https://gitea.example.com", "o/r")),
    ("ssh://git@git.example.com:2222/o/r.git", ("", "https://git.example.com", "o/r")),
    ("https://user:secret@git.example.com:8443/o/r", ("", "https://git.example.com:8443", "o/r")),
    ("/srv/git/app.git", None),
    ("file:///srv/git/o/r.git", None),
    ("https://git.example.com/only-one", None),
    ("not a url", None),
])
def test_forge_defaults_guess_from_a_clone_url(url: str,
                                               expected: tuple[str, str, str] | None) -> None:
    assert forge_defaults(url) == expected


def test_default_api_urls_per_kind() -> None:
    assert default_api_url("github", "https://github.com") == "https://api.github.com"
    assert default_api_url("github", "https://ghe.example") == "https://ghe.example/api/v3"
    assert default_api_url("gitlab", "https://gitlab.example/") == "https://gitlab.example/api/v4"
    assert default_api_url("gitea", "https://codeberg.org") == "https://codeberg.org/api/v1"


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ForgeError) as unknown:
        forge_for(kind="bitbucket", api_url="https://x", repository_path="o/r", token="t")
    assert unknown.value.kind == "invalid"


def test_a_branch_without_new_commits_is_refused_by_github(fake_github: FakeGitHub) -> None:
    with pytest.raises(ForgeError) as refused:
        adapter(fake_github).pull_request_open(head_branch="main", base_branch="main",
                                               title="T", body="B")
    assert (refused.value.kind, refused.value.forge_status) == ("invalid", 422)
    assert "No commits between main and main" in refused.value.message


@pytest.mark.parametrize(("fixture", "header", "value"), [
    ("fake_github", "Authorization", "token {}"),
    ("fake_github", "Authorization", "Bearer {}"),
    ("fake_gitlab", "PRIVATE-TOKEN", "{}"),
    ("fake_gitlab", "Authorization", "Bearer {}"),
    ("fake_gitea", "Authorization", "token {}"),
])
def test_the_fakes_accept_each_forges_token_headers(request: pytest.FixtureRequest,
                                                    fixture: str, header: str,
                                                    value: str) -> None:
    fake: FakeForge = request.getfixturevalue(fixture)
    path = {"github": "/repos/acme/app/pulls", "gitlab": "/projects/acme%2Fapp/merge_requests",
            "gitea": "/repos/acme/app/pulls"}[fake.kind]
    accepted = httpx.get(fake.api_url + path, headers={header: value.format(fake.token)})
    refused = httpx.get(fake.api_url + path, headers={header: value.format("wrong")})
    assert (accepted.status_code, accepted.json()) == (200, [])
    assert refused.status_code == 401

"""The API's shared plumbing as a client meets it: every error under /api/ is the error
JSON, pages refuse malformed parameters, bodies are JSON only."""

from __future__ import annotations

import pytest

from tests.fixtures import Cast, token_client

pytestmark = pytest.mark.django_db


def error_of(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()["error"]


@pytest.mark.parametrize("path", [
    "/api/v1/no-such-thing/",
    "/api/v1/orgs/acme/endpoints/not-a-uuid/",  # the URL converter refuses it
    "/api/v2/",
])
def test_an_unknown_api_path_answers_the_error_json(cast: Cast, path: str) -> None:
    client = token_client(cast.org, cast.admin, ["read"])
    response = client.get(path)
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "Not found.", "details": {}}


def test_an_unknown_organization_answers_the_error_json(cast: Cast) -> None:
    response = token_client(cast.org, cast.admin, ["read"]).get("/api/v1/orgs/nope/projects/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_portal_pages_keep_their_html_404(client) -> None:
    response = client.get("/definitely-not-a-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_a_missing_slash_is_still_redirected(cast: Cast) -> None:
    response = token_client(cast.org, cast.admin, ["read"]).get("/api/v1/orgs")
    assert response.status_code == 301
    assert response["Location"] == "/api/v1/orgs/"


@pytest.mark.parametrize("body, content_type", [
    ("title=Invoices&text=Round", "application/x-www-form-urlencoded"),
    ("--b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nx\r\n--b--\r\n",
     "multipart/form-data; boundary=b"),
])
def test_a_body_that_is_not_json_gets_a_415_saying_so(cast: Cast, body: str,
                                                      content_type: str) -> None:
    client = token_client(cast.org, cast.admin, ["write"])
    response = client.generic("POST", "/api/v1/orgs/acme/projects/PAY/requirements/", body,
                              content_type=content_type)
    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "unsupported_media_type"
    assert content_type.split(";")[0] in error["message"]


@pytest.mark.parametrize("value", ["null", "0", "-3", "1.5", "ten", ""])
def test_a_malformed_page_size_is_a_400_naming_it(cast: Cast, value: str) -> None:
    response = token_client(cast.org, cast.admin, ["read"]).get(
        "/api/v1/orgs/acme/projects/", {"page_size": value})
    assert response.status_code == 400
    assert list(error_of(response)["details"]) == ["page_size"]


def test_a_large_page_size_gets_the_largest_page(cast: Cast) -> None:
    response = token_client(cast.org, cast.admin, ["read"]).get(
        "/api/v1/orgs/acme/projects/", {"page_size": "100000"})
    assert response.status_code == 200
    assert [p["key"] for p in response.json()["results"]] == ["PAY"]


def test_a_cursor_no_page_gave_out_is_not_found(cast: Cast) -> None:
    response = token_client(cast.org, cast.admin, ["read"]).get(
        "/api/v1/orgs/acme/projects/", {"cursor": "cD1ub3Q%%%"})
    assert response.status_code == 404
    assert "cursor" in error_of(response)["message"]


@pytest.mark.parametrize("query", [{"until": ""}, {"after_seq": "0.5"}, {"after_seq": ""}])
def test_a_typed_filter_given_empty_or_malformed_is_a_400(cast: Cast, query: dict) -> None:
    response = token_client(cast.org, cast.admin, ["read"]).get(
        "/api/v1/orgs/acme/audit-events/", query)
    assert response.status_code == 400
    assert list(error_of(response)["details"]) == list(query)


def test_a_text_filter_may_be_empty(cast: Cast) -> None:
    response = token_client(cast.org, cast.admin, ["read"]).get(
        "/api/v1/orgs/acme/tickets/", {"q": ""})
    assert response.status_code == 200

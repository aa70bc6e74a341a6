"""Error pages look like HAAO and offer a way on: 400, 403, 404, 500 and a refused form."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from django.views.defaults import server_error


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_missing_page_is_styled_with_the_signed_in_users_navigation(cast) -> None:
    response = signed_in(cast.member).get("/o/acme/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'data-error="404"' in html and "Page not found" in html
    assert "/static/css/app.css" in html and 'href="/"' in html
    assert cast.member.email in html  # the header's user menu, as on every portal page


@pytest.mark.django_db
def test_a_forbidden_page_says_why_and_links_home(cast) -> None:
    response = signed_in(cast.member).get("/o/acme/admin/members/")
    assert response.status_code == 403
    html = response.content.decode()
    assert 'data-error="403"' in html
    assert "Your role in this organization does not allow this." in html
    assert 'href="/"' in html and cast.member.email in html


@pytest.mark.django_db
def test_a_form_with_a_stale_csrf_token_gets_a_page_that_says_what_to_do(cast) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.admin)
    response = client.post("/o/acme/projects/new/", {"key": "NEW", "name": "New"})
    assert response.status_code == 403
    html = response.content.decode()
    assert 'data-error="403-csrf"' in html and "reload the page" in html
    assert cast.admin.email in html


def test_a_request_for_an_unknown_host_gets_the_styled_400_page(client) -> None:
    response = client.get("/", HTTP_HOST="unknown.example")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-error="400"' in html and "/static/css/app.css" in html and 'href="/"' in html


def test_the_500_page_renders_without_a_database_or_a_request_context() -> None:
    # No django_db mark: any query would fail the test, as a down database would the page.
    response = server_error(RequestFactory().get("/o/acme/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert 'data-error="500"' in html and "Something went wrong on our side" in html
    assert "/static/css/app.css" in html and 'href="/"' in html

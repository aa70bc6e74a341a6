"""The Atomic Ticket JSON Schema, served publicly at a stable URL with caching headers."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tickets.spec import load_schema

URL = "/api/v1/schemas/atomic-ticket/v1.json"


@pytest.mark.django_db
def test_anyone_fetches_the_schema_as_schema_json() -> None:
    response = Client().get(URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/schema+json"
    assert json.loads(response.content) == load_schema()
    assert "max-age=3600" in response["Cache-Control"] and "public" in response["Cache-Control"]


@pytest.mark.django_db
def test_a_client_with_the_current_etag_gets_304_without_a_body() -> None:
    etag = Client().get(URL)["ETag"]
    assert etag.startswith('"') and len(etag) == 66
    again = Client().get(URL, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    stale = Client().get(URL, HTTP_IF_NONE_MATCH='"something-else"')
    assert stale.status_code == 200


@pytest.mark.django_db
def test_a_bad_or_expired_token_does_not_stop_anyone_reading_the_schema() -> None:
    response = Client().get(URL, HTTP_AUTHORIZATION="Bearer haao_nonsense")
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_schema_cannot_be_written() -> None:
    assert Client().post(URL, {}).status_code == 405
    assert Client().head(URL).status_code == 200

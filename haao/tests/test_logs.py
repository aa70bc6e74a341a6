"""The console logs an ordinary refusal (403, 404) as one line, without a traceback."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the settings' console handler writes, for the duration of a test."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    assert isinstance(handler, logging.StreamHandler)
    seen = io.StringIO()
    previous = handler.setStream(seen)
    try:
        yield seen
    finally:
        handler.setStream(previous)


def test_a_forbidden_page_is_one_warning_line_without_a_traceback(cast, console) -> None:
    client = Client()
    client.force_login(cast.member)
    assert client.get("/o/acme/admin/members/").status_code == 403
    text = console.getvalue()
    assert "Forbidden (Permission denied): /o/acme/admin/members/" in text
    assert "Traceback" not in text and "PermissionDenied" not in text


def test_a_missing_page_and_a_refused_api_call_log_no_traceback(cast, console) -> None:
    client = Client()
    client.force_login(cast.outsider)
    assert client.get("/o/acme/projects/").status_code == 404
    assert client.get("/api/v1/orgs/acme/projects/").status_code == 404
    text = console.getvalue()
    assert "Not Found: /o/acme/projects/" in text
    assert "Traceback" not in text


def test_a_server_error_still_logs_its_traceback(console) -> None:
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError as error:
        logging.getLogger("django.request").error(
            "Internal Server Error: /x/", exc_info=error, extra={"status_code": 500})
    assert "Traceback" in console.getvalue() and "disk on fire" in console.getvalue()

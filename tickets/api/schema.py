"""The Atomic Ticket JSON Schema at a stable public URL, for agents and tools to validate
tickets against."""

from __future__ import annotations

import functools
import hashlib

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import etag, require_safe

from tickets.spec import SCHEMA_PATH

MEDIA_TYPE = "application/schema+json"


@functools.cache
def _document() -> tuple[bytes, str]:
    """The schema file as stored (its bytes are the version) and their strong ETag."""
    content = SCHEMA_PATH.read_bytes()
    return content, f'"{hashlib.sha256(content).hexdigest()}"'


def _etag(request: HttpRequest) -> str:
    return _document()[1]


@require_safe
@cache_control(public=True, max_age=3600)
@etag(_etag)
def atomic_ticket_schema(request: HttpRequest) -> HttpResponse:
    """Public: no credentials, so a coder's tooling can fetch it like any published schema."""
    response = HttpResponse(_document()[0], content_type=MEDIA_TYPE)
    response["Access-Control-Allow-Origin"] = "*"
    return response

"""REST API plumbing shared by every app: error JSON, pagination."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, pagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from haao.errors import ApplicationError

NOT_FOUND_MESSAGE = "Not found."


def _flatten(detail: Any) -> Any:
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    return str(detail)


def _first_message(details: Any, path: str = "") -> str:
    """A sentence naming the first field that failed, e.g. "email: Enter a valid email."."""
    if isinstance(details, dict):
        for key, value in details.items():
            name = key if key != "non_field_errors" else ""
            return _first_message(value, f"{path}.{name}" if path and name else path or name)
    if isinstance(details, list) and details:
        return _first_message(details[0], path)
    return f"{path}: {details}" if path else str(details)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error answers {"error": {"code", "message", "details"}}."""
    if isinstance(exc, ApplicationError):
        body = {"code": exc.code, "message": exc.message, "details": exc.details}
        return Response({"error": body}, status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(NOT_FOUND_MESSAGE)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, exceptions.ValidationError):
        details = _flatten(exc.detail)
        if not isinstance(details, dict):
            details = {"non_field_errors": details}
        message = _first_message(details)
        code = "invalid"
    else:
        details = {}
        detail = exc.detail
        message = str(detail if not isinstance(detail, (list, dict)) else exc.default_detail)
        code = exc.default_code
    response.data = {"error": {"code": code, "message": str(message), "details": details}}
    return response


class CursorPagination(pagination.CursorPagination):
    """Stable pages over growing lists; newest first unless a view says otherwise."""

    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

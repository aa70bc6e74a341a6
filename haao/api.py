"""REST API plumbing shared by every app: error JSON, strict input fields, pagination."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.validators import RegexValidator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, pagination, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from haao.errors import ApplicationError

NOT_FOUND_MESSAGE = "Not found."
API_PREFIX = "/api/"


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `not_found`.")
    message = serializers.CharField(help_text="A sentence for people, naming the problem.")
    details = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Per-field messages for invalid input; empty otherwise.",
    )


class ErrorSerializer(serializers.Serializer):
    """The shape of every error the API answers."""

    error = ErrorBodySerializer()


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


def _phrase(status: int) -> str:
    """The status's reason phrase ("Not Found"); "Error" for a code HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _error_code(status: int) -> str:
    return _phrase(status).lower().replace(" ", "_").replace("-", "_")


class JSONErrorsUnderAPI:
    """Every error under /api/ answers the API's error JSON, whoever produced it.

    Django itself answers some requests before any API view runs: a path no route matches
    (or whose converter refuses the value, e.g. a malformed UUID) gets handler404's HTML page,
    a request Django cannot read gets an empty 400. Portal pages keep whatever handler404
    renders; only responses under /api/ that are not JSON are rewritten. Listed before
    CommonMiddleware, so its slash-appending redirect still happens first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (response.status_code < 400 or not request.path.startswith(API_PREFIX)
                or response.streaming or isinstance(response, Response)
                or response.get("Content-Type", "").startswith("application/json")):
            return response  # an API view's own error, rendered as the client asked
        status = response.status_code
        message = NOT_FOUND_MESSAGE if status == 404 else _phrase(status) + "."
        body = {"error": {"code": _error_code(status), "message": message, "details": {}}}
        answer = JsonResponse(body, status=status)
        for header in ("Allow", "WWW-Authenticate", "Retry-After"):
            if header in response:
                answer[header] = response[header]
        return answer


EMPTY_PARAMETER = "Give a value, or leave the parameter out."


def refuse_empty(query_params: Any, names: Iterable[str]) -> None:
    """A 400 naming each of `names` given empty (`?until=`): read as "not set" it would
    silently widen what the client asked for."""
    empty = [name for name in names if query_params.get(name, None) == ""]
    if empty:
        raise exceptions.ValidationError({name: [EMPTY_PARAMETER] for name in empty})


def _free_text(field: forms.Field) -> bool:
    return type(field) is forms.CharField and not any(
        isinstance(validator, RegexValidator) for validator in field.validators)


class StrictFilterBackend(DjangoFilterBackend):
    """django-filter's backend, refusing a filter given empty (`?until=`, `?project=`):
    django-filter would ignore it, so a client's mistake would silently widen the list. Only
    free text (a text filter with no validators, like `q`) may be empty. haao.openapi
    documents each filter's bounds from the same form fields."""

    def get_filterset(self, request: Request, queryset: Any, view: Any) -> Any:
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            refuse_empty(request.query_params, [name for name, item in filterset.filters.items()
                                                if not _free_text(item.field)])
        return filterset


class CursorPagination(pagination.CursorPagination):
    """Stable pages over growing lists; newest first unless a view says otherwise.

    `page_size` must be a whole number of at least 1 (a larger one than `max_page_size`
    gets `max_page_size` rows); anything else is a 400 naming the parameter, not a silent
    default. A cursor that no page handed out answers 404: there is no such page.
    """

    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    invalid_cursor_message = "Invalid cursor: pass the `next` or `previous` link of a page."

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return int(self.page_size)
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise exceptions.ValidationError({self.page_size_query_param: [
                "Expected a whole number of at least 1."]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (f"Rows per page (default {self.page_size}); more "
                                            f"than {self.max_page_size} give "
                                            f"{self.max_page_size}.")
        return parameters


ERROR_DESCRIPTIONS = {
    400: "Invalid input; `details` names each field.",
    401: "Not signed in, or the token is missing, malformed, expired or revoked.",
    403: "Your role or the token's scope does not allow this.",
    404: "No such organization or object, or it belongs to another organization.",
    409: "The request conflicts with the current state.",
    415: "The body is not JSON (send `Content-Type: application/json`).",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """OpenAPI responses for the error statuses an operation may answer."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
            for code in codes}


READ_ERRORS = (401, 403, 404)
WRITE_ERRORS = (400, 401, 403, 404, 415)


def validated(serializer_class: type[serializers.Serializer], request: Request) -> Any:
    """The request body validated by `serializer_class`; invalid input raises a 400."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StrictCharField(serializers.CharField):
    """A string and only a string: numbers, lists and objects are refused, not converted.

    DRF's CharField already refuses NUL and surrogate characters (the database could not
    store them); this adds the type check that its `str(123)` coercion skips.
    """

    # The count is filled in by Django's length validator; the limit here (haao.limits wording).
    default_error_messages = {"not_a_string": "Expected a string but got {type}.",
                              "max_length": "At most {max_length} characters "
                                            "(got %(show_value)d)."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string", type=_json_type(data))
        return str(super().to_internal_value(data))


class StrictEmailField(serializers.EmailField):
    default_error_messages = {"not_a_string": "Expected a string but got {type}."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string", type=_json_type(data))
        return str(super().to_internal_value(data))


class StrictChoiceField(serializers.ChoiceField):
    default_error_messages = {"not_a_string": "Expected a string but got {type}.",
                              "invalid_choice": "\"{input}\" is not one of: {choices}."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string", type=_json_type(data))
        if data not in self.choice_strings_to_values:
            # Echo a bounded part of the input: the error must not repeat a megabyte back.
            shown = data if len(data) <= 40 else f"{data[:40]}…"
            self.fail("invalid_choice", input=shown, choices=", ".join(self.choices))
        return super().to_internal_value(data)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class StrictSerializer(serializers.Serializer):
    """Input serializer that names unknown fields instead of silently dropping them."""

    # haao.openapi reads it: the schema then says `additionalProperties: false`.
    refuses_unknown_fields = True

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(key)[:50] for key in set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: ["This field is not accepted here."] for key in unknown[:10]}
                )
        return super().to_internal_value(data)

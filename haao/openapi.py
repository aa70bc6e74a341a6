"""The OpenAPI document is the API's contract: what drf-spectacular derives from the views,
plus what it cannot derive on its own.

- An operation with query parameters documents the 400 a malformed one answers.
- A request serializer that refuses unknown fields (`refuses_unknown_fields`) says
  `additionalProperties: false`; one with `schema_extra` adds the constraints its
  `validate()` enforces across fields (e.g. `minProperties`).
- `LINKS` chain the responses of one operation to the operations they identify (a project to
  its requirements, a requirement to its tickets, a ticket to its actions), so a client or a
  stateful test can follow them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import RegexValidator
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import get_view_model
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from haao.api import ErrorSerializer

ORG = "$request.path.org"
# DRF's CharField refuses NUL (the database stores none) and, unless blank is allowed,
# text that is only whitespace once trimmed. (Lone surrogates are refused too; a range of
# them in a pattern is not portable across JSON Schema validators, so it is left unsaid.)
TEXT = "^[^\\x00]*$"
NOT_BLANK = "^[^\\x00]*[^\\x00\\s][^\\x00]*$"


class StrictFilterExtension(DjangoFilterExtension):
    """Each filter's bounds in the schema, read from the form field that enforces them:
    length, range and pattern (django-filter's own mapping gives only the type)."""

    target_class = "haao.api.StrictFilterBackend"
    match_subclasses = True
    priority = 1

    def get_schema_operation_parameters(self, auto_schema: Any, *args: Any,
                                        **kwargs: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(
            auto_schema, *args, **kwargs)
        view = auto_schema.view
        model = get_view_model(view)
        if model is None:
            return parameters
        filterset_class = self.target.get_filterset_class(view, model._default_manager.none())
        if not filterset_class:
            return parameters
        filters = filterset_class.base_filters
        for parameter in parameters:
            item = filters.get(parameter["name"])
            if item is None:
                continue
            field = item.field
            schema = parameter["schema"]
            if schema.get("type") == "array":
                continue
            if getattr(field, "max_length", None):
                schema["maxLength"] = field.max_length
            for bound, key in (("min_value", "minimum"), ("max_value", "maximum")):
                value = getattr(field, bound, None)
                if value is not None:
                    schema[key] = value
            if isinstance(field, forms.CharField) and schema.get("type") == "string":
                schema["pattern"] = TEXT  # forms.CharField refuses NUL
            for validator in field.validators:
                if isinstance(validator, RegexValidator) and not validator.inverse_match:
                    regex = validator.regex
                    text = regex if isinstance(regex, str) else regex.pattern
                    schema["pattern"] = text.replace("\\Z", "$")
        return parameters


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        has_query = any(parameter.get("in") == "query"
                        for parameter in operation.get("parameters", []))
        if has_query and "400" not in responses:
            responses["400"] = self._get_response_for_code(
                OpenApiResponse(ErrorSerializer, description="A query parameter is malformed; "
                                                             "`details` names it."), "400")
            operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _get_request_body(self, direction: str = "request") -> dict[str, Any] | None:
        body: dict[str, Any] | None = super()._get_request_body(direction)
        if body and getattr(self.get_request_serializer(), "schema_extra",
                            {}).get("minProperties"):
            body["required"] = True  # an empty body is refused, so it is not optional
        return body

    def _map_serializer_field(self, field: Any, direction: str,
                              bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (direction == "request" and isinstance(schema, dict)
                and isinstance(field, serializers.CharField)
                and schema.get("type") == "string" and "pattern" not in schema
                and "format" not in schema):
            blank_refused = not field.allow_blank and field.trim_whitespace
            schema["pattern"] = NOT_BLANK if blank_refused else TEXT
        return schema

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request":
            if getattr(serializer, "refuses_unknown_fields", False):
                schema["additionalProperties"] = False
            schema.update(getattr(serializer, "schema_extra", {}))
        return schema


def _key(operation: str, description: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation, "description": description,
            "parameters": {"org": ORG, **parameters}}


PROJECT_KEY = "$response.body#/key"
REQUIREMENT_KEY = "$response.body#/key"
TICKET_KEY = "$response.body#/key"

_PROJECT_LINKS = {
    "GetProject": _key("projects_retrieve", "The project.", key=PROJECT_KEY),
    "ListRequirements": _key("requirements_list", "The project's requirements.",
                             key=PROJECT_KEY),
    "CreateRequirement": _key("requirements_create", "Submit a requirement to the project.",
                              key=PROJECT_KEY),
    "ProjectEvents": _key("projects_events", "The project's events.", key=PROJECT_KEY),
}
_REQUIREMENT_LINKS = {
    "GetRequirement": _key("requirements_retrieve", "The requirement with its tickets.",
                           key=REQUIREMENT_KEY),
    "ApproveRequirement": _key("requirements_approve", "Gate 1: approve its tickets.",
                               key=REQUIREMENT_KEY),
    "ReorderTickets": _key("requirements_reorder", "Gate 1: order its tickets.",
                           key=REQUIREMENT_KEY),
    "AddTicket": _key("requirements_add_ticket", "Gate 1: add a ticket by hand.",
                      key=REQUIREMENT_KEY),
}
_TICKET_LINKS = {
    "GetTicket": _key("tickets_retrieve", "The ticket.", key=TICKET_KEY),
    "TicketEvents": _key("tickets_events", "The ticket's events.", key=TICKET_KEY),
    "UpdateSpec": _key("tickets_update_spec", "Gate 1: replace its spec.", key=TICKET_KEY),
    "ApproveTicket": _key("tickets_approve", "Gate 1: approve it.", key=TICKET_KEY),
    "AcceptTicket": _key("tickets_accept", "Gate 2: accept the work.", key=TICKET_KEY),
    "RejectTicket": _key("tickets_reject", "Gate 2: reject the work.", key=TICKET_KEY),
    "CancelTicket": _key("tickets_cancel", "Cancel it.", key=TICKET_KEY),
    "RetryTicket": _key("tickets_retry", "Queue it again.", key=TICKET_KEY),
}
_FIRST_TICKET = {
    "GetFirstTicket": _key("tickets_retrieve", "The requirement's first ticket.",
                           key="$response.body#/tickets/0/key"),
}
_ENDPOINT_LINKS = {
    "GetEndpoint": _key("endpoints_retrieve", "The endpoint.", endpoint="$response.body#/id"),
    "UpdateEndpoint": _key("endpoints_update", "Change it.", endpoint="$response.body#/id"),
    "CheckEndpoint": _key("endpoints_check", "Check its health.",
                          endpoint="$response.body#/id"),
    "DeleteEndpoint": _key("endpoints_delete", "Delete it.", endpoint="$response.body#/id"),
}

# operationId → status → links of that response.
LINKS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "projects_create": {"201": _PROJECT_LINKS},
    "projects_retrieve": {"200": _PROJECT_LINKS},
    "projects_update": {"200": _PROJECT_LINKS},
    "requirements_create": {"201": _REQUIREMENT_LINKS},
    "requirements_retrieve": {"200": {**_REQUIREMENT_LINKS, **_FIRST_TICKET}},
    "requirements_approve": {"200": {**_REQUIREMENT_LINKS, **_FIRST_TICKET}},
    "requirements_reorder": {"200": {**_REQUIREMENT_LINKS, **_FIRST_TICKET}},
    "requirements_add_ticket": {"201": _TICKET_LINKS},
    "tickets_retrieve": {"200": _TICKET_LINKS},
    "tickets_update_spec": {"200": _TICKET_LINKS},
    "endpoints_create": {"201": _ENDPOINT_LINKS},
    "endpoints_retrieve": {"200": _ENDPOINT_LINKS},
}


def add_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: put `LINKS` on their responses; a link to an operation the
    document does not have is a mistake here, so it fails schema generation."""
    operations = {operation["operationId"]: operation
                  for item in result.get("paths", {}).values()
                  for operation in item.values() if isinstance(operation, dict)
                  and "operationId" in operation}
    for operation_id, by_status in LINKS.items():
        for status, links in by_status.items():
            for name, link in links.items():
                if link["operationId"] not in operations:
                    raise ValueError(f"OpenAPI link {name} of {operation_id} points at "
                                     f"{link['operationId']}, which no route serves.")
            if operation_id not in operations:
                raise ValueError(f"OpenAPI links are declared for {operation_id}, which no "
                                 "route serves.")
            response = operations[operation_id]["responses"][status]
            response["links"] = links
    return result

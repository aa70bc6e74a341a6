"""REST endpoints of inference endpoints, under `/api/v1/orgs/<org>/endpoints/`.

Admins only (manage policies); reads need the `read` scope, writes the `admin` scope. The API
key is write-only: responses say `has_api_key` and never carry the key.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.roles import Capability, TokenScope
from agents import health, selectors, services
from agents.models import (
    MAX_CONCURRENCY,
    EndpointFlavor,
    EndpointKind,
    EndpointRole,
    InferenceEndpoint,
)
from agents.services import MAX_API_KEY, MAX_PRICE
from haao.api import (
    NOT_FOUND_MESSAGE,
    READ_ERRORS,
    WRITE_ERRORS,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    errors,
    validated,
)
from haao.audit import Actor
from haao.endpoints import OrgEndpoint

# --- Serializers -----------------------------------------------------------------------------

class EndpointSerializer(serializers.ModelSerializer):
    has_api_key = serializers.BooleanField(read_only=True,
                                           help_text="Whether a key is stored (never returned).")
    flavor = serializers.ChoiceField(
        choices=EndpointFlavor.choices, allow_blank=True, read_only=True,
        help_text="Which local server it is; blank for Anthropic.")
    price_source = serializers.SerializerMethodField(
        help_text="`table`: Anthropic's price table at call time; `endpoint`: the prices here.")

    class Meta:
        model = InferenceEndpoint
        fields = ["id", "name", "kind", "flavor", "base_url", "model", "role",
                  "max_concurrency", "price_input", "price_output", "price_source",
                  "has_api_key", "self_hosted", "dedicated_queue", "enabled", "health_status",
                  "health_checked_at", "health_latency_ms", "health_error", "created_at",
                  "updated_at"]
        read_only_fields = fields

    def get_price_source(self, endpoint: InferenceEndpoint) -> str:
        if endpoint.kind == EndpointKind.ANTHROPIC and (
                endpoint.price_input is None or endpoint.price_output is None):
            return "table"
        return "endpoint"


def _price_field() -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=0, max_value=MAX_PRICE, required=False,
        allow_null=True, help_text="USD per million tokens; null on an Anthropic endpoint "
                                   "follows the price table.")


class EndpointWriteSerializer(StrictSerializer):
    name = StrictCharField(max_length=100)
    kind = StrictChoiceField(choices=EndpointKind.choices)
    flavor = StrictChoiceField(choices=EndpointFlavor.choices, required=False,
                               help_text="Which local server it is (ignored for Anthropic).")
    base_url = StrictCharField(max_length=2048, required=False, allow_blank=True,
                               help_text="Empty for Anthropic's own API. Private and loopback "
                                         "addresses only if the operator allowlisted them.")
    model = StrictCharField(max_length=200)
    api_key = StrictCharField(max_length=MAX_API_KEY, required=False, allow_blank=True,
                              write_only=True,
                              help_text="Write-only; stored encrypted, never returned.")
    role = StrictChoiceField(choices=EndpointRole.choices)
    max_concurrency = serializers.IntegerField(min_value=1, max_value=MAX_CONCURRENCY,
                                               required=False)
    price_input = _price_field()
    price_output = _price_field()
    dedicated_queue = StrictCharField(max_length=63, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    self_hosted = serializers.BooleanField(
        required=False, help_text="It runs on the organization's own machines (allowed under "
                                  "data residency). Default: true for local servers, false "
                                  "for Anthropic.")


class EndpointUpdateSerializer(EndpointWriteSerializer):
    clear_api_key = serializers.BooleanField(required=False, default=False,
                                             help_text="Remove the stored key.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


# --- Views -----------------------------------------------------------------------------------

class _EndpointsBase(OrgEndpoint):
    required_capability = Capability.MANAGE_POLICIES
    read_scope = TokenScope.READ
    write_scope = TokenScope.ADMIN
    serializer_class = EndpointSerializer

    def get_queryset(self) -> QuerySet[InferenceEndpoint]:
        if self.is_schema_generation():
            return InferenceEndpoint.objects.none()
        return InferenceEndpoint.objects.for_org(self.org)

    def get_endpoint(self, endpoint: Any) -> InferenceEndpoint:
        found = selectors.endpoint_by_id(organization=self.org, endpoint_id=endpoint)
        if found is None:
            raise NotFound(NOT_FOUND_MESSAGE)
        return found


@extend_schema(tags=["endpoints"])
class EndpointListView(_EndpointsBase):
    @extend_schema(operation_id="endpoints_list",
                   responses={200: EndpointSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str) -> Response:
        """The organization's model endpoints with their health (admins)."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(EndpointSerializer(page, many=True).data)

    @extend_schema(operation_id="endpoints_create", request=EndpointWriteSerializer,
                   responses={201: EndpointSerializer, **errors(*WRITE_ERRORS, 409)})
    def post(self, request: Request, org: str) -> Response:
        """Add an endpoint (admin scope); its URL must pass the SSRF guard."""
        data = dict(validated(EndpointWriteSerializer, request))
        api_key = data.pop("api_key", "")
        endpoint = services.endpoint_create(organization=self.org, actor=self.actor,
                                            values=data, api_key=api_key)
        return Response(EndpointSerializer(endpoint).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["endpoints"])
class EndpointDetailView(_EndpointsBase):
    @extend_schema(operation_id="endpoints_retrieve",
                   responses={200: EndpointSerializer, **errors(*READ_ERRORS)})
    def get(self, request: Request, org: str, endpoint: Any) -> Response:
        """One endpoint."""
        return Response(EndpointSerializer(self.get_endpoint(endpoint)).data)

    @extend_schema(operation_id="endpoints_update", request=EndpointUpdateSerializer,
                   responses={200: EndpointSerializer, **errors(*WRITE_ERRORS, 409)})
    def patch(self, request: Request, org: str, endpoint: Any) -> Response:
        """Change some fields (admin scope); an empty `api_key` keeps the stored key."""
        target = self.get_endpoint(endpoint)
        data = dict(validated(EndpointUpdateSerializer, request))
        api_key = data.pop("api_key", "")
        clear = data.pop("clear_api_key", False)
        updated = services.endpoint_update(organization=self.org, endpoint=target,
                                           actor=self.actor, changes=data, api_key=api_key,
                                           clear_api_key=clear)
        return Response(EndpointSerializer(updated).data)

    @extend_schema(operation_id="endpoints_delete", request=None,
                   responses={204: None, **errors(401, 403, 404, 409)})
    def delete(self, request: Request, org: str, endpoint: Any) -> Response:
        """Delete an endpoint without recorded calls (409 otherwise: disable it instead)."""
        services.endpoint_delete(organization=self.org, endpoint=self.get_endpoint(endpoint),
                                 actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["endpoints"])
class EndpointCheckView(_EndpointsBase):
    @extend_schema(operation_id="endpoints_check", request=None,
                   responses={200: EndpointSerializer, **errors(401, 403, 404)})
    def post(self, request: Request, org: str, endpoint: Any) -> Response:
        """Check the endpoint's health now and return it with the result (admin scope)."""
        checked = health.endpoint_check_health(endpoint=self.get_endpoint(endpoint),
                                                 actor=Actor.of(self.actor))
        return Response(EndpointSerializer(checked).data)

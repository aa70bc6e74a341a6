"""Endpoint health: a probe that costs no tokens, and its result recorded on the endpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass

import anthropic
import httpx
from django.db import transaction
from django.utils import timezone

from agents.models import (
    HEALTH_ERROR_LIMIT,
    EndpointKind,
    HealthStatus,
    InferenceEndpoint,
)
from agents.tls import tls_context
from haao import reads
from haao.audit import SYSTEM, Actor, audit_record
from haao.errors import ApplicationError
from haao.ssrf import (
    RefusedAddress,
    SDKPinnedTransport,
    SDKRefusedAddress,
    check_endpoint_url,
    pinned_client,
)

HEALTH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    latency_ms: int
    error: str = ""


def _models_url(base_url: str) -> str:
    """`/v1/models` of an OpenAI-compatible server, whether or not the base ends in /v1."""
    base = base_url.rstrip("/")
    return f"{base}/models" if base.endswith("/v1") else f"{base}/v1/models"


def _probe_openai(endpoint: InferenceEndpoint, timeout: float) -> str:
    headers = {"Accept": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.reveal_api_key()}"
    # No redirects, and the connection goes to the address the SSRF guard checked.
    with pinned_client(organization_id=endpoint.organization_id, timeout=timeout,
                       verify=tls_context()) as client:
        response = client.get(_models_url(endpoint.base_url), headers=headers)
    if response.status_code != 200:
        return f"GET /v1/models answered HTTP {response.status_code}."
    try:
        body = response.json()
    except ValueError:
        return "GET /v1/models did not answer JSON."
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return "GET /v1/models answered JSON without a `data` list of models."
    return ""


def _probe_anthropic(endpoint: InferenceEndpoint, timeout: float) -> str:
    if not endpoint.api_key:
        return "No API key is stored for this endpoint."
    # No redirects, and the connection goes to the address the SSRF guard checked.
    with anthropic.DefaultHttpxClient(timeout=timeout, follow_redirects=False,
                                      transport=SDKPinnedTransport(
                                          organization_id=endpoint.organization_id,
                                          verify=tls_context())) as http:
        client = anthropic.Anthropic(api_key=endpoint.reveal_api_key(),
                                     base_url=endpoint.base_url, max_retries=0,
                                     timeout=timeout, http_client=http)
        try:
            client.messages.count_tokens(model=endpoint.model,
                                         messages=[{"role": "user", "content": "ping"}])
        except anthropic.APIStatusError as error:
            # Only the status and Anthropic's own error type are kept: whatever answered may
            # be another service, and its words are not for the admin's page.
            kind = _anthropic_error_type(error.body)
            return f"Anthropic answered HTTP {error.status_code}" + (f" ({kind})." if kind
                                                                      else ".")
        except anthropic.APIConnectionError as error:
            if isinstance(error.__cause__, SDKRefusedAddress):
                return str(error.__cause__)
            return "Could not reach the endpoint (no connection)."
    return ""


# The error types of Anthropic's API (docs: errors); anything else is not repeated.
_ANTHROPIC_ERRORS = frozenset({"invalid_request_error", "authentication_error",
                               "permission_error", "not_found_error", "request_too_large",
                               "rate_limit_error", "api_error", "overloaded_error",
                               "billing_error", "timeout_error"})


def _anthropic_error_type(body: object) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if kind in _ANTHROPIC_ERRORS else ""


def _probe(endpoint: InferenceEndpoint, timeout: float) -> HealthResult:
    started = time.monotonic()
    try:
        check_endpoint_url(endpoint.base_url, organization_id=endpoint.organization_id)
        if endpoint.kind == EndpointKind.ANTHROPIC:
            error = _probe_anthropic(endpoint, timeout)
        else:
            error = _probe_openai(endpoint, timeout)
    except ApplicationError as refused:
        error = refused.message
    except httpx.TimeoutException:
        error = f"No answer within {timeout:g} seconds."
    except RefusedAddress as refused:
        error = str(refused)
    except httpx.HTTPError as failure:
        error = f"Could not reach the endpoint ({type(failure).__name__})."
    latency = int((time.monotonic() - started) * 1000)
    return HealthResult(ok=not error, latency_ms=latency, error=error[:HEALTH_ERROR_LIMIT])


def endpoint_check_health(*, endpoint: InferenceEndpoint, actor: Actor = SYSTEM,
                          timeout: float = HEALTH_TIMEOUT_SECONDS) -> InferenceEndpoint:
    """Call the endpoint once and record its health; a change of status is an audit event."""
    return endpoint_health_record(endpoint=endpoint, result=_probe(endpoint, timeout),
                                  actor=actor)


def endpoint_health_record(*, endpoint: InferenceEndpoint, result: HealthResult,
                           actor: Actor = SYSTEM) -> InferenceEndpoint:
    """Record a probe's (or a failed real call's) verdict on the endpoint's health."""
    status = HealthStatus.OK if result.ok else HealthStatus.FAILING
    organization = endpoint.organization
    with transaction.atomic():
        current = (InferenceEndpoint.objects.for_org(organization).select_for_update()
                   .get(pk=endpoint.pk))
        previous = current.health_status
        current.health_status = status
        current.health_checked_at = timezone.now()
        current.health_latency_ms = result.latency_ms
        current.health_error = result.error[:HEALTH_ERROR_LIMIT]
        current.save(update_fields=["health_status", "health_checked_at", "health_latency_ms",
                                    "health_error"])
        reads.forget()  # the task's later routing sees the new status
        # Periodic checks would flood the log; only a change of status is worth an event.
        if previous != status:
            audit_record(organization=organization, actor=actor, type="endpoint.health_changed",
                         target=current, data={"before": previous, "after": status,
                                               "latency_ms": result.latency_ms,
                                               "error": result.error[:300]})
    return current

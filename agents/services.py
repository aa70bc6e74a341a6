"""Writes for inference endpoints (create, update, delete, health) and the model-call ledger.

Every mutating service validates its whole input before writing anything and writes an audit
event in the same transaction; no event ever carries an API key.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import anthropic
import httpx
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization, User
from agents import pricing
from agents.models import (
    ANTHROPIC_BASE_URL,
    HEALTH_ERROR_LIMIT,
    MAX_CONCURRENCY,
    QUEUE_NAME_PATTERN,
    CallOutcome,
    CallRole,
    EndpointFlavor,
    EndpointKind,
    EndpointRole,
    HealthStatus,
    InferenceEndpoint,
    ModelCall,
    queue_name_validator,
)
from agents.selectors import dedicated_queue_held_elsewhere
from agents.tls import tls_context
from haao.audit import SYSTEM, Actor, audit_record
from haao.errors import ApplicationError, Conflict
from haao.ssrf import (
    RefusedAddress,
    SDKPinnedTransport,
    SDKRefusedAddress,
    check_endpoint_url,
    pinned_client,
)

HEALTH_TIMEOUT_SECONDS = 5.0
MAX_PRICE = Decimal("100000")
MAX_API_KEY = 1000
MAX_TOKENS = 2**31 - 1
EDITABLE = ("name", "kind", "flavor", "base_url", "model", "role", "max_concurrency",
            "price_input", "price_output", "dedicated_queue", "enabled", "self_hosted")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUEUE = re.compile(QUEUE_NAME_PATTERN)


def _invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError(f"{field}: {message}", details={field: [message]})


def _text(values: dict[str, Any], field: str, limit: int, *, required: bool = True) -> str:
    value = values.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _invalid(field, "Expected text.")
    value = value.strip()
    if required and not value:
        raise _invalid(field, "This field is required.")
    if len(value) > limit:
        raise _invalid(field, f"Use at most {limit} characters.")
    if _CONTROL.search(value):
        raise _invalid(field, "Control characters (like NUL or line breaks) are not allowed.")
    return value


def _choice(values: dict[str, Any], field: str, choices: type[Any]) -> str:
    value = values.get(field)
    if not isinstance(value, str) or value not in choices.values:
        raise _invalid(field, f"Choose one of: {', '.join(choices.values)}.")
    return value


def _price(values: dict[str, Any], field: str) -> Decimal | None:
    value = values.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, (bool, float)):
        raise _invalid(field, "Give the price as a decimal string or a whole number.")
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _invalid(field, "Enter a number.") from None
    if not price.is_finite():
        raise _invalid(field, "Enter a finite number.")
    if price < 0:
        raise _invalid(field, "A price cannot be negative.")
    if price > MAX_PRICE:
        raise _invalid(field, f"A price above {MAX_PRICE} USD per million tokens is not "
                              "plausible.")
    if price != price.quantize(pricing.MICRO):
        raise _invalid(field, "Use at most 6 decimal places.")
    return price.quantize(pricing.MICRO)


def clean_endpoint_values(values: dict[str, Any]) -> dict[str, Any]:
    """Every editable field validated and normalised, or an ApplicationError naming the field."""
    clean: dict[str, Any] = {}
    clean["name"] = _text(values, "name", 100)
    clean["kind"] = kind = _choice(values, "kind", EndpointKind)
    if kind == EndpointKind.ANTHROPIC:
        clean["flavor"] = ""
    else:
        flavor = values.get("flavor") or EndpointFlavor.OTHER
        clean["flavor"] = _choice({"flavor": flavor}, "flavor", EndpointFlavor)
    base_url = _text(values, "base_url", 2048, required=kind != EndpointKind.ANTHROPIC)
    clean["base_url"] = base_url or ANTHROPIC_BASE_URL
    clean["model"] = _text(values, "model", 200)
    clean["role"] = _choice(values, "role", EndpointRole)
    concurrency = values.get("max_concurrency", 1)
    if (isinstance(concurrency, bool) or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_CONCURRENCY):
        raise _invalid("max_concurrency", f"Use a whole number from 1 to {MAX_CONCURRENCY}.")
    clean["max_concurrency"] = concurrency
    clean["price_input"] = _price(values, "price_input")
    clean["price_output"] = _price(values, "price_output")
    if kind == EndpointKind.ANTHROPIC:
        if ((clean["price_input"] is None or clean["price_output"] is None)
                and not pricing.is_known_model(clean["model"])):
            field = "price_input" if clean["price_input"] is None else "price_output"
            raise _invalid(field, f"The price table has no price for '{clean['model'][:80]}'; "
                                  "set both prices.")
    else:
        # Local models cost what the operator says: nothing unless a rate is set.
        for field in ("price_input", "price_output"):
            if clean[field] is None:
                clean[field] = Decimal("0.000000")
    queue = _text(values, "dedicated_queue", 63, required=False)
    if queue and not _QUEUE.match(queue):
        raise _invalid("dedicated_queue", str(queue_name_validator.message))
    clean["dedicated_queue"] = queue
    enabled = values.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid("enabled", "Expected true or false.")
    clean["enabled"] = enabled
    # Local servers run on the organization's machines unless the admin says otherwise; an
    # Anthropic endpoint is the cloud unless it points at the organization's own gateway.
    self_hosted = values.get("self_hosted")
    if self_hosted is None:
        self_hosted = kind != EndpointKind.ANTHROPIC
    if not isinstance(self_hosted, bool):
        raise _invalid("self_hosted", "Expected true or false.")
    if self_hosted and clean["base_url"] == ANTHROPIC_BASE_URL:
        raise _invalid("self_hosted", "api.anthropic.com is Anthropic's cloud, not a server "
                                      "of the organization's own.")
    clean["self_hosted"] = self_hosted
    return clean


def _clean_api_key(api_key: Any) -> str:
    if api_key is None:
        return ""
    if not isinstance(api_key, str):
        raise _invalid("api_key", "Expected text.")
    api_key = api_key.strip()
    if len(api_key) > MAX_API_KEY:
        raise _invalid("api_key", f"Use at most {MAX_API_KEY} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in api_key):
        raise _invalid("api_key", "An API key has no spaces or control characters.")
    return api_key


def _public(endpoint: InferenceEndpoint) -> dict[str, Any]:
    """What the audit log may say about an endpoint: everything but the key."""
    return {
        "name": endpoint.name, "kind": endpoint.kind, "flavor": endpoint.flavor,
        "base_url": endpoint.base_url, "model": endpoint.model, "role": endpoint.role,
        "max_concurrency": endpoint.max_concurrency,
        "price_input": None if endpoint.price_input is None else str(endpoint.price_input),
        "price_output": None if endpoint.price_output is None else str(endpoint.price_output),
        "dedicated_queue": endpoint.dedicated_queue, "enabled": endpoint.enabled,
        "self_hosted": endpoint.self_hosted,
        "has_api_key": endpoint.has_api_key,
    }


def _refuse_foreign_queue(organization: Organization, queue: str) -> None:
    # The worker of whoever holds a name consumes its tasks: a second claimant would receive
    # (or steal) another organization's work.
    if dedicated_queue_held_elsewhere(queue=queue, organization=organization):
        raise Conflict(f"The queue name '{queue}' is used by another organization; choose "
                       "another (for example one starting with your organization's slug).",
                       code="queue_taken", details={"dedicated_queue": ["taken"]})


def _name_taken(name: str) -> Conflict:
    return Conflict(f"An endpoint named '{name}' exists already.", details={"name": ["taken"]})


def endpoint_create(*, organization: Organization, actor: User, values: dict[str, Any],
                    api_key: str = "") -> InferenceEndpoint:
    """A new endpoint; its URL must pass the SSRF guard and its name be free."""
    clean = clean_endpoint_values(values)
    key = _clean_api_key(api_key)
    check_endpoint_url(clean["base_url"], organization_id=organization.pk)
    try:
        with transaction.atomic():
            if InferenceEndpoint.objects.for_org(organization).filter(
                    name=clean["name"]).exists():
                raise _name_taken(clean["name"])
            _refuse_foreign_queue(organization, clean["dedicated_queue"])
            endpoint = InferenceEndpoint.objects.create(organization=organization,
                                                        api_key=key, **clean)
            audit_record(organization=organization, actor=Actor.of(actor),
                         type="endpoint.created", target=endpoint, data=_public(endpoint))
    except IntegrityError:
        raise _name_taken(clean["name"]) from None
    return endpoint


def endpoint_update(*, organization: Organization, endpoint: InferenceEndpoint, actor: User,
                    changes: dict[str, Any], api_key: str = "",
                    clear_api_key: bool = False) -> InferenceEndpoint:
    """Change some fields; a blank `api_key` keeps the stored key, `clear_api_key` removes it."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise _invalid(unknown[0][:50], "This field cannot be changed.")
    key = _clean_api_key(api_key)
    if key and clear_api_key:
        raise _invalid("api_key", "Give a new key or clear the stored one, not both.")
    try:
        with transaction.atomic():
            current = (InferenceEndpoint.objects.for_org(organization).select_for_update()
                       .get(pk=endpoint.pk))
            before = _public(current)
            merged = {field: getattr(current, field) for field in EDITABLE}
            if current.kind == EndpointKind.ANTHROPIC and current.base_url == ANTHROPIC_BASE_URL:
                merged["base_url"] = ""
            merged.update(changes)
            clean = clean_endpoint_values(merged)
            if clean["base_url"] != current.base_url:
                check_endpoint_url(clean["base_url"], organization_id=organization.pk)
                if current.api_key and not key and not clear_api_key:
                    # The stored key is write-only: it is never sent to an address the
                    # admin who typed it did not choose.
                    raise _invalid("api_key", "A new URL needs the API key entered again "
                                   "(or cleared): the stored key is only sent where it was "
                                   "entered for.")
            if clean["name"] != current.name and InferenceEndpoint.objects.for_org(
                    organization).filter(name=clean["name"]).exclude(pk=current.pk).exists():
                raise _name_taken(clean["name"])
            if clean["dedicated_queue"] != current.dedicated_queue:
                _refuse_foreign_queue(organization, clean["dedicated_queue"])
            for field, value in clean.items():
                setattr(current, field, value)
            key_change = None
            if key:
                current.api_key = key
                key_change = "replaced"
            elif clear_api_key and current.api_key:
                current.api_key = None
                key_change = "cleared"
            after = _public(current)
            changed = {field: {"before": before[field], "after": after[field]}
                       for field in after if before[field] != after[field]}
            if key_change:
                changed["api_key"] = {"before": "********" if before["has_api_key"] else None,
                                      "after": key_change}
            if not changed:
                return current
            current.save()
            audit_record(organization=organization, actor=Actor.of(actor),
                         type="endpoint.updated", target=current, data={"changes": changed})
    except IntegrityError:
        raise _name_taken(str(changes.get("name", ""))[:100]) from None
    return current


def endpoint_delete(*, organization: Organization, endpoint: InferenceEndpoint,
                    actor: User) -> None:
    """Delete an endpoint no call refers to; one with recorded calls must be disabled instead."""
    with transaction.atomic():
        current = (InferenceEndpoint.objects.for_org(organization).select_for_update()
                   .get(pk=endpoint.pk))
        calls = ModelCall.objects.for_org(organization).filter(endpoint=current).count()
        if calls:
            raise Conflict(f"'{current.name}' has {calls} recorded model call"
                           f"{'s' if calls != 1 else ''}; disable it instead, so cost reports "
                           "keep them.", code="endpoint_in_use")
        audit_record(organization=organization, actor=Actor.of(actor), type="endpoint.deleted",
                     target=current, data=_public(current))
        current.delete()


# --- Prices ----------------------------------------------------------------------------------

def endpoint_price(*, endpoint: InferenceEndpoint, at: datetime | None = None) -> pricing.Price:
    """The rates of a call to `endpoint` at `at`: the table's for Anthropic unless overridden."""
    if endpoint.kind != EndpointKind.ANTHROPIC:
        local_in = endpoint.price_input or Decimal(0)
        return pricing.Price(input=local_in, output=endpoint.price_output or Decimal(0),
                             cache_write=local_in, cache_read=local_in, source="endpoint")
    rate_in, rate_out = endpoint.price_input, endpoint.price_output
    if rate_in is not None and rate_out is not None:
        return pricing.Price.from_input_output(rate_in, rate_out, source="endpoint")
    table = pricing.price_for(endpoint.model, at=at)  # unknown model: an error, never 0
    if rate_in is None and rate_out is None:
        return table
    if rate_in is not None:
        return pricing.Price.from_input_output(rate_in, table.output, source="endpoint")
    return pricing.Price(table.input, rate_out or Decimal(0), table.cache_write,
                         table.cache_read, source="endpoint",
                         effective_from=table.effective_from)


# --- Health ----------------------------------------------------------------------------------

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
        # Periodic checks would flood the log; only a change of status is worth an event.
        if previous != status:
            audit_record(organization=organization, actor=actor, type="endpoint.health_changed",
                         target=current, data={"before": previous, "after": status,
                                               "latency_ms": result.latency_ms,
                                               "error": result.error[:300]})
    return current


# --- The model-call ledger -------------------------------------------------------------------

def _tokens(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise _invalid(field, "Expected a whole number of at least 0.")
    return value


def _same_org(organization: Organization, **objects: Any) -> None:
    for field, obj in objects.items():
        if obj is not None and obj.organization_id != organization.pk:
            raise _invalid(field, "It belongs to another organization.")


def model_call_record(
    *, organization: Organization, endpoint: InferenceEndpoint, role: str, outcome: str,
    model: str = "", input_tokens: int = 0, output_tokens: int = 0,
    cache_write_tokens: int = 0, cache_read_tokens: int = 0, latency_ms: int = 0,
    request_id: str = "", error: str = "", redactions: int = 0, project: Any = None,
    requirement: Any = None, ticket: Any = None, attempt: Any = None,
    idempotency_key: str | None = None, at: datetime | None = None,
) -> ModelCall:
    """One ledger row, costed at the price in force at `at`; a repeated key returns the first."""
    if role not in CallRole.values:
        raise _invalid("role", f"Choose one of: {', '.join(CallRole.values)}.")
    if outcome not in CallOutcome.values:
        raise _invalid("outcome", f"Choose one of: {', '.join(CallOutcome.values)}.")
    counts = {name: _tokens(name, value) for name, value in (
        ("input_tokens", input_tokens), ("output_tokens", output_tokens),
        ("cache_write_tokens", cache_write_tokens), ("cache_read_tokens", cache_read_tokens),
        ("latency_ms", latency_ms), ("redactions", redactions))}
    _same_org(organization, endpoint=endpoint, project=project, requirement=requirement,
              ticket=ticket, attempt=attempt)
    # A call of an attempt is a call of its ticket (an audit may be handed only the attempt):
    # the ticket's cost, `agents.selectors.ticket_costs`, sums the rows naming the ticket.
    if attempt is not None and ticket is None:
        ticket = attempt.ticket
    if ticket is not None and project is None:
        project = ticket.project
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        raise _invalid("idempotency_key", "Use 1-200 characters.")
    when = at or timezone.now()
    if idempotency_key is not None:
        existing = ModelCall.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_call(existing, organization)
    model = model or endpoint.model
    price = endpoint_price(endpoint=endpoint, at=when)
    cost = pricing.cost_of(price, counts["input_tokens"], counts["output_tokens"],
                           counts["cache_write_tokens"], counts["cache_read_tokens"])
    try:
        with transaction.atomic():
            call = ModelCall.objects.create(
                organization=organization, endpoint=endpoint, endpoint_name=endpoint.name,
                is_cloud=endpoint.is_cloud, model=model[:200], role=role, outcome=outcome,
                error=error[:1000], request_id=request_id[:200], cost=cost,
                price=price.snapshot(), project=project, requirement=requirement,
                ticket=ticket, attempt=attempt, idempotency_key=idempotency_key,
                created_at=when, **counts)
            audit_record(organization=organization, actor=Actor.model(call.model),
                         type="model_call.recorded", target=call,
                         project_id=project.pk if project is not None else None,
                         data={"endpoint": endpoint.name, "role": role, "outcome": outcome,
                               "input_tokens": call.input_tokens,
                               "output_tokens": call.output_tokens,
                               "cost": str(cost), "latency_ms": call.latency_ms})
    except IntegrityError:
        # A concurrent delivery of the same task won the race: its row stands.
        existing = ModelCall.objects.filter(idempotency_key=idempotency_key).first()
        if idempotency_key is None or existing is None:
            raise
        return _same_call(existing, organization)
    return call


def _same_call(existing: ModelCall, organization: Organization) -> ModelCall:
    if existing.organization_id != organization.pk:
        raise Conflict("This idempotency key was used by another organization.",
                       details={"idempotency_key": ["taken"]})
    return existing

"""Writes for inference endpoints: create, update, delete (health: agents.health; the
model-call ledger: agents.ledger).

Every mutating service validates its whole input before writing anything and writes an audit
event in the same transaction; no event ever carries an API key.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import Organization, User
from agents import pricing
from agents.models import (
    ANTHROPIC_BASE_URL,
    MAX_CONCURRENCY,
    QUEUE_NAME_PATTERN,
    EndpointFlavor,
    EndpointKind,
    EndpointRole,
    InferenceEndpoint,
    ModelCall,
    queue_name_validator,
)
from agents.selectors import dedicated_queue_held_elsewhere
from haao.audit import Actor, audit_record
from haao.errors import Conflict, field_error
from haao.ssrf import (
    check_endpoint_url,
)

MAX_PRICE = Decimal("100000")
MAX_API_KEY = 1000
EDITABLE = ("name", "kind", "flavor", "base_url", "model", "role", "max_concurrency",
            "price_input", "price_output", "dedicated_queue", "enabled", "self_hosted")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUEUE = re.compile(QUEUE_NAME_PATTERN)


def _text(values: dict[str, Any], field: str, limit: int, *, required: bool = True) -> str:
    value = values.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise field_error(field, "Expected text.")
    value = value.strip()
    if required and not value:
        raise field_error(field, "This field is required.")
    if len(value) > limit:
        raise field_error(field, f"Use at most {limit} characters.")
    if _CONTROL.search(value):
        raise field_error(field, "Control characters (like NUL or line breaks) are not allowed.")
    return value


def _choice(values: dict[str, Any], field: str, choices: type[Any]) -> str:
    value = values.get(field)
    if not isinstance(value, str) or value not in choices.values:
        raise field_error(field, f"Choose one of: {', '.join(choices.values)}.")
    return value


def _price(values: dict[str, Any], field: str) -> Decimal | None:
    value = values.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, (bool, float)):
        raise field_error(field, "Give the price as a decimal string or a whole number.")
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise field_error(field, "Enter a number.") from None
    if not price.is_finite():
        raise field_error(field, "Enter a finite number.")
    if price < 0:
        raise field_error(field, "A price cannot be negative.")
    if price > MAX_PRICE:
        raise field_error(field, f"A price above {MAX_PRICE} USD per million tokens is not "
                              "plausible.")
    if price != price.quantize(pricing.MICRO):
        raise field_error(field, "Use at most 6 decimal places.")
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
        raise field_error("max_concurrency", f"Use a whole number from 1 to {MAX_CONCURRENCY}.")
    clean["max_concurrency"] = concurrency
    clean["price_input"] = _price(values, "price_input")
    clean["price_output"] = _price(values, "price_output")
    if kind == EndpointKind.ANTHROPIC:
        if ((clean["price_input"] is None or clean["price_output"] is None)
                and not pricing.is_known_model(clean["model"])):
            field = "price_input" if clean["price_input"] is None else "price_output"
            raise field_error(field, f"The price table has no price for '{clean['model'][:80]}'; "
                                  "set both prices.")
    else:
        # Local models cost what the operator says: nothing unless a rate is set.
        for field in ("price_input", "price_output"):
            if clean[field] is None:
                clean[field] = Decimal("0.000000")
    queue = _text(values, "dedicated_queue", 63, required=False)
    if queue and not _QUEUE.match(queue):
        raise field_error("dedicated_queue", str(queue_name_validator.message))
    clean["dedicated_queue"] = queue
    enabled = values.get("enabled", True)
    if not isinstance(enabled, bool):
        raise field_error("enabled", "Expected true or false.")
    clean["enabled"] = enabled
    # Local servers run on the organization's machines unless the admin says otherwise; an
    # Anthropic endpoint is the cloud unless it points at the organization's own gateway.
    self_hosted = values.get("self_hosted")
    if self_hosted is None:
        self_hosted = kind != EndpointKind.ANTHROPIC
    if not isinstance(self_hosted, bool):
        raise field_error("self_hosted", "Expected true or false.")
    if self_hosted and clean["base_url"] == ANTHROPIC_BASE_URL:
        raise field_error("self_hosted", "api.anthropic.com is Anthropic's cloud, not a server "
                                      "of the organization's own.")
    clean["self_hosted"] = self_hosted
    return clean


def _clean_api_key(api_key: Any) -> str:
    if api_key is None:
        return ""
    if not isinstance(api_key, str):
        raise field_error("api_key", "Expected text.")
    api_key = api_key.strip()
    if len(api_key) > MAX_API_KEY:
        raise field_error("api_key", f"Use at most {MAX_API_KEY} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in api_key):
        raise field_error("api_key", "An API key has no spaces or control characters.")
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
        raise field_error(unknown[0][:50], "This field cannot be changed.")
    key = _clean_api_key(api_key)
    if key and clear_api_key:
        raise field_error("api_key", "Give a new key or clear the stored one, not both.")
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
                    raise field_error("api_key", "A new URL needs the API key entered again "
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

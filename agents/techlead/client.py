"""The one wrapper around the `anthropic` SDK: bounded retries, usage rows, request ids, costs.

The SDK's own retries are switched off (`max_retries=0`) so that every retry happens here,
is bounded, and leaves one ledger row per HTTP request. What is retried:

- 429 rate limits: after the `retry-after` header (capped at RETRY_AFTER_CAP seconds);
- 529 overloaded, other 5xx, timeouts, dropped connections and unparseable 200 bodies:
  exponential back-off with jitter;
- never: 400/401/403/404 and the like, and a spend-limit or credit-balance refusal, which
  raises `SpendLimitReached` at once (retrying cannot help until someone pays).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import httpx
from anthropic.types import Message

from accounts.models import Organization
from agents import pricing
from agents.ledger import endpoint_price, model_call_record
from agents.models import CallOutcome, CallRole, InferenceEndpoint
from agents.selectors import cloud_budgets
from agents.tls import tls_context
from haao.errors import ApplicationError
from haao.secrets_registry import organization_secrets
from haao.ssrf import SDKPinnedTransport, check_endpoint_url
from policies.enforcement import (
    ANY_CALL,
    GuardrailRefused,
    Refusal,
    over_budget,
    refusal_record,
    residency_refusal,
)
from policies.redaction import redact_payload
from policies.selectors import effective_policy

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
RETRY_AFTER_CAP = 30.0
BACKOFF_BASE = 1.0
BACKOFF_CAP = 20.0
DEFAULT_TIMEOUT = 120.0
ERROR_LIMIT = 1000
# Error codes the API (and SDK 2.x) use for refusals that only money fixes.
SPEND_LIMIT_CODES = frozenset({
    "enforced_spend_limit_reached", "contract_spend_limit_reached",
    "linked_organization_spend_limit_reached",
})


class TechLeadError(ApplicationError):
    """The Tech Lead model could not give an answer; `outcome` says how the last try ended."""

    code = "tech_lead_unavailable"
    status = 502

    def __init__(self, message: str, *, outcome: str = CallOutcome.ERROR,
                 request_id: str = "", code: str | None = None) -> None:
        super().__init__(message, code=code, details={"outcome": outcome,
                                                      "request_id": request_id})
        self.outcome = outcome
        self.request_id = request_id


class SpendLimitReached(TechLeadError):
    """The provider refused for money (spend limit or credit balance); retrying cannot help."""

    code = "spend_limit_reached"
    status = 402


class CallRefused(TechLeadError):
    """The provider refused the request itself (bad request, key, permission); not retried."""

    code = "tech_lead_refused"


class InvalidAnswer(TechLeadError):
    """The provider answered, but with nothing usable (empty content, malformed body)."""

    code = "tech_lead_invalid_answer"


@dataclass(frozen=True)
class CallContext:
    """What a call belongs to, for its ledger rows; `key` makes the rows idempotent."""

    organization: Organization
    role: str
    key: str
    project: Any = None
    requirement: Any = None
    ticket: Any = None
    attempt: Any = None

    def for_round(self, suffix: str) -> CallContext:
        """The same context with the key of a later request of the same conversation."""
        return CallContext(organization=self.organization, role=self.role,
                           key=f"{self.key}:{suffix}", project=self.project,
                           requirement=self.requirement, ticket=self.ticket,
                           attempt=self.attempt)


@dataclass
class _Try:
    outcome: str
    error: str
    request_id: str = ""
    retry_after: float | None = None
    retryable: bool = False
    spend_limit: bool = False


def _header(error: anthropic.APIStatusError, name: str) -> str | None:
    try:
        return error.response.headers.get(name)
    except AttributeError:
        return None


def _retry_after(error: anthropic.APIStatusError) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms` wins), or None."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = _header(error, name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue
        if value >= 0:
            return min(value, RETRY_AFTER_CAP)
    return None


def _error_body(error: anthropic.APIStatusError) -> dict[str, Any]:
    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error")
    return inner if isinstance(inner, dict) else body


def is_spend_limit(error: anthropic.APIStatusError) -> bool:
    """A refusal only money fixes: a spend-limit error code, a 402, or the credit-balance 400."""
    if isinstance(error, (anthropic.EnforcedSpendLimitReachedError,
                          anthropic.ContractSpendLimitReachedError,
                          anthropic.LinkedOrganizationSpendLimitReachedError,
                          anthropic.PaymentRequiredError)):
        return True
    inner = _error_body(error)
    details = inner.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    if code in SPEND_LIMIT_CODES or error.status_code == 402:
        return True
    # The prepaid-credit refusal is an ordinary invalid_request_error; only its text differs.
    message = str(inner.get("message", ""))
    return error.status_code == 400 and "credit balance" in message.lower()


def _classify(error: Exception) -> _Try:
    """How one failed request ended and whether another try may help."""
    if isinstance(error, anthropic.APITimeoutError):
        return _Try(CallOutcome.TIMEOUT, "The Tech Lead did not answer in time.", retryable=True)
    if isinstance(error, (anthropic.APIConnectionError, httpx.TransportError)):
        return _Try(CallOutcome.CONNECTION_ERROR,
                    f"The connection to the Tech Lead failed: {type(error).__name__}.",
                    retryable=True)
    if isinstance(error, anthropic.APIStatusError):
        request_id = error.request_id or _header(error, "request-id") or ""
        kind = str(_error_body(error).get("type", "")) or f"HTTP {error.status_code}"
        text = f"{kind} ({error.status_code}): {_error_body(error).get('message', '')!s}"
        if is_spend_limit(error):
            return _Try(CallOutcome.RATE_LIMITED if error.status_code == 429
                        else CallOutcome.CLIENT_ERROR, text, request_id, spend_limit=True)
        if error.status_code == 429:
            return _Try(CallOutcome.RATE_LIMITED, text, request_id,
                        retry_after=_retry_after(error), retryable=True)
        if error.status_code >= 500 or error.status_code in (408, 409):
            return _Try(CallOutcome.SERVER_ERROR, text, request_id, retryable=True)
        return _Try(CallOutcome.CLIENT_ERROR, text, request_id)
    if isinstance(error, (ValueError, anthropic.APIResponseValidationError)):
        return _Try(CallOutcome.INVALID_OUTPUT,
                    "The Tech Lead's answer was not a valid JSON message.", retryable=True)
    return _Try(CallOutcome.ERROR, f"{type(error).__name__}: {error}")


class TechLeadClient:
    """Calls one Anthropic endpoint; every request is checked, bounded, logged and ledgered."""

    def __init__(self, endpoint: InferenceEndpoint, *, timeout: float = DEFAULT_TIMEOUT,
                 max_attempts: int = MAX_ATTEMPTS, backoff_base: float = BACKOFF_BASE,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.sleep = sleep
        self.jitter = jitter

    def _sdk(self) -> anthropic.Anthropic:
        # Checked right before each request: what the host resolves to can change.
        check_endpoint_url(self.endpoint.base_url,
                           organization_id=self.endpoint.organization_id)
        return anthropic.Anthropic(base_url=self.endpoint.base_url,
                                   api_key=self.endpoint.reveal_api_key() or "none",
                                   max_retries=0, timeout=self.timeout,
                                   # No redirects; connects to the address checked.
                                   http_client=anthropic.DefaultHttpxClient(
                                       follow_redirects=False,
                                       transport=SDKPinnedTransport(
                                           organization_id=self.endpoint.organization_id,
                                           verify=tls_context())))

    def backoff(self, attempt: int) -> float:
        """Seconds before try `attempt + 1`: exponential, capped, with jitter in [½, 1]."""
        ceiling = min(BACKOFF_CAP, self.backoff_base * (2 ** (attempt - 1)))
        return ceiling * (0.5 + self.jitter() / 2)

    def count_tokens(self, **params: Any) -> int:
        """Input tokens of a request as the provider counts them (free; not in the ledger)."""
        fields = {k: v for k, v in params.items()
                  if k in ("messages", "system", "tools", "tool_choice", "thinking")}
        try:
            counted = self._sdk().messages.count_tokens(model=self.endpoint.model, **fields)
        except (anthropic.APIError, httpx.HTTPError, json.JSONDecodeError) as error:
            outcome = _classify(error)
            raise TechLeadError(f"Counting tokens failed: {outcome.error}",
                                outcome=outcome.outcome, request_id=outcome.request_id) from None
        return int(counted.input_tokens)

    def estimate_cost(self, *, input_tokens: int, max_output_tokens: int) -> Decimal:
        """The most a call can cost: its counted input and `max_tokens` of output, uncached."""
        price = endpoint_price(endpoint=self.endpoint)
        return pricing.cost_of(price, input_tokens, max_output_tokens)

    def create(self, *, context: CallContext, **params: Any) -> Message:
        """`messages.create` with HAAO's retries; one ledger row per HTTP request."""
        if context.role not in CallRole.values:
            raise ValueError(f"unknown call role {context.role!r}")
        if context.organization.pk != self.endpoint.organization_id:
            # Checked before any request: another tenant's endpoint is never called or billed.
            raise ApplicationError("The endpoint belongs to another organization.",
                                   details={"endpoint": ["another organization"]})
        params.setdefault("model", self.endpoint.model)
        params, redactions = self._guard(context, params)
        last: _Try | None = None
        for attempt in range(1, self.max_attempts + 1):
            sdk = self._sdk()
            started = time.monotonic()
            request_id = ""
            try:
                raw = sdk.messages.with_raw_response.create(**params)
                request_id = raw.headers.get("request-id", "") or ""
                message = raw.parse()
            except (anthropic.APIError, httpx.HTTPError, ValueError) as error:
                # ValueError: a 200 whose body is not JSON (json.JSONDecodeError) or not a Message.
                latency = _ms(started)
                last = _classify(error)
                last.request_id = last.request_id or request_id
                self._record(context, attempt, outcome=last.outcome, latency_ms=latency,
                             request_id=last.request_id, error=last.error,
                             redactions=redactions)
                logger.warning("Tech Lead %s call failed (try %d/%d, request-id %s): %s",
                               context.role, attempt, self.max_attempts,
                               last.request_id or "-", last.error)
                if last.spend_limit:
                    raise SpendLimitReached(
                        "The Anthropic account refused the call for its spend limit or credit "
                        f"balance; nothing was retried. {last.error}"[:ERROR_LIMIT],
                        outcome=last.outcome, request_id=last.request_id) from None
                if not last.retryable:
                    raise CallRefused(f"The Tech Lead refused the request: {last.error}",
                                      outcome=last.outcome, request_id=last.request_id) from None
                if attempt < self.max_attempts:
                    wait = last.retry_after if last.retry_after is not None \
                        else self.backoff(attempt)
                    self.sleep(wait)
                continue
            latency = _ms(started)
            usage = message.usage
            empty = not message.content
            self._record(context, attempt,
                         outcome=CallOutcome.INVALID_OUTPUT if empty else CallOutcome.OK,
                         latency_ms=latency, request_id=request_id,
                         error="The answer had no content." if empty else "",
                         input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                         cache_write_tokens=usage.cache_creation_input_tokens or 0,
                         cache_read_tokens=usage.cache_read_input_tokens or 0,
                         redactions=redactions)
            logger.info("Tech Lead %s call ok (request-id %s, %d ms, in %d, out %d, cache "
                        "write %d, cache read %d)", context.role, request_id, latency,
                        usage.input_tokens, usage.output_tokens,
                        usage.cache_creation_input_tokens or 0,
                        usage.cache_read_input_tokens or 0)
            if empty:
                raise InvalidAnswer("The Tech Lead answered with no content.",
                                    outcome=CallOutcome.INVALID_OUTPUT, request_id=request_id)
            return message
        assert last is not None
        raise TechLeadError(
            f"The Tech Lead did not answer after {self.max_attempts} tries: {last.error}",
            outcome=last.outcome, request_id=last.request_id)

    def _guard(self, context: CallContext, params: dict[str, Any]
               ) -> tuple[dict[str, Any], int]:
        """The policy's checks before any request: data residency, secrets redacted from
        everything a cloud model would read, and the spend caps against what the call could
        cost. A refusal is recorded (event and ledger row) and raised; no request is made."""

        policy = _policy_of(context)
        redactions = 0
        refusal: Refusal | None = residency_refusal(policy, endpoint=self.endpoint)
        if refusal is None and self.endpoint.is_cloud:
            known = organization_secrets(organization=context.organization)
            for name in ("system", "messages"):
                if name in params:
                    params[name], found = redact_payload(params[name], known=known)
                    redactions += found.count
            budgets = cloud_budgets(policy, organization=context.organization,
                                    ticket=context.ticket, requirement=context.requirement)
            if budgets:
                refusal = over_budget(budgets, ANY_CALL)
                if refusal is None:
                    refusal = over_budget(budgets, self._cost_bound(params))
                    counted = self._counted_cost(params) if refusal is not None else None
                    if counted is not None:
                        refusal = over_budget(budgets, counted)
        if refusal is not None:
            refusal_record(organization=context.organization, refusal=refusal, policy=policy,
                           ticket=context.ticket, requirement=context.requirement,
                           point="cloud call")
            self._record(context, 0, outcome=CallOutcome.BLOCKED, latency_ms=0,
                         error=refusal.message[:ERROR_LIMIT], redactions=redactions)
            raise GuardrailRefused(refusal)
        return params, redactions

    def _cost_bound(self, params: dict[str, Any]) -> Decimal:
        """The most the call can cost, without asking anyone: every byte of the request as
        a token (no token is shorter) and the full `max_tokens` of output."""
        fields = {k: params[k] for k in ("system", "messages", "tools") if k in params}
        bound = len(json.dumps(fields, default=str).encode())
        return self.estimate_cost(input_tokens=bound,
                                  max_output_tokens=int(params.get("max_tokens") or 0))

    def _counted_cost(self, params: dict[str, Any]) -> Decimal | None:
        """The most the call can cost with its input counted by the provider (free, and the
        request is already redacted); None when counting is not possible."""
        try:
            tokens = self.count_tokens(**params)
        except TechLeadError as error:
            logger.info("Counting tokens before a capped call failed: %s", error.message)
            return None
        return self.estimate_cost(input_tokens=tokens,
                                  max_output_tokens=int(params.get("max_tokens") or 0))

    def _record(self, context: CallContext, attempt: int, **values: Any) -> None:
        # Keyed per try, so a re-delivered task re-running the same conversation adds no rows.
        model_call_record(organization=context.organization, endpoint=self.endpoint,
                          role=context.role, project=context.project,
                          requirement=context.requirement, ticket=context.ticket,
                          attempt=context.attempt,
                          idempotency_key=f"{context.key}#{attempt}"[:200], **values)


def _policy_of(context: CallContext) -> Any:
    """The policy the call runs under: its project's, else the organization's own."""

    project = context.project
    for owner in (context.ticket, context.requirement):
        if project is None and owner is not None:
            project = owner.project
    return effective_policy(organization=context.organization, project=project)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def block_dicts(message: Message) -> list[dict[str, Any]]:
    """The answer's content blocks as plain dicts, to send back as the assistant turn."""
    return [block.model_dump(exclude_none=True, mode="json") for block in message.content]


def tool_input(message: Message, name: str) -> tuple[str, Mapping[str, Any] | None]:
    """The id and input of the first `name` tool call in the answer, or ("", None)."""
    for block in message.content:
        if block.type == "tool_use" and block.name == name:
            data = block.input
            return block.id, data if isinstance(data, Mapping) else None
    return "", None

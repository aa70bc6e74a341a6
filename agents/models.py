"""Inference endpoints (where models run) and the ledger of every model call."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from haao.crypto import EncryptedTextField, Secret
from haao.tenancy import TenantModel

QUEUE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}\Z"
queue_name_validator = RegexValidator(
    QUEUE_NAME_PATTERN,
    "Use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.",
)
HEALTH_ERROR_LIMIT = 1000
MAX_CONCURRENCY = 64
ANTHROPIC_BASE_URL = "https://api.anthropic.com"


class EndpointKind(models.TextChoices):
    ANTHROPIC = "anthropic", "Anthropic (Claude)"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (local)"


class EndpointFlavor(models.TextChoices):
    LM_STUDIO = "lm_studio", "LM Studio"
    OLLAMA = "ollama", "Ollama"
    VLLM = "vllm", "vLLM"
    LLAMA_CPP = "llama_cpp", "llama.cpp server"
    OTHER = "other", "Other"


class EndpointRole(models.TextChoices):
    TECH_LEAD = "tech_lead", "Tech Lead"
    CODER = "coder", "Coder"
    AUDITOR = "auditor", "Auditor"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    OK = "ok", "OK"
    FAILING = "failing", "Failing"


class InferenceEndpoint(TenantModel):
    """A model server the organization's work is routed to; its API key is write-only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=EndpointKind.choices)
    flavor = models.CharField(max_length=20, choices=EndpointFlavor.choices, blank=True,
                              help_text="Which local server it is (a hint; blank for Anthropic).")
    base_url = models.CharField(max_length=2048)
    model = models.CharField(max_length=200)
    api_key = EncryptedTextField(blank=True, default="")
    self_hosted = models.BooleanField(
        default=False, help_text="It runs on the organization's own machines: what it is sent "
                                 "stays there (data residency allows only these).")
    role = models.CharField(max_length=20, choices=EndpointRole.choices)
    max_concurrency = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_CONCURRENCY)],
        help_text="Requests HAAO sends to it at once.")
    # USD per million tokens. Null (Anthropic only): the price table's price at call time.
    price_input = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    price_output = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    dedicated_queue = models.CharField(
        max_length=63, blank=True, validators=[queue_name_validator],
        help_text="Only the tenant's own worker consumes this queue (bring your own inference).")
    enabled = models.BooleanField(default=True)
    health_status = models.CharField(max_length=10, choices=HealthStatus.choices,
                                     default=HealthStatus.UNKNOWN)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    health_error = models.TextField(blank=True, max_length=HEALTH_ERROR_LIMIT)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="endpoint_name_per_org"),
            models.CheckConstraint(
                condition=models.Q(max_concurrency__gte=1, max_concurrency__lte=MAX_CONCURRENCY),
                name="endpoint_concurrency_range"),
            models.CheckConstraint(
                condition=(models.Q(price_input__isnull=True) | models.Q(price_input__gte=0))
                & (models.Q(price_output__isnull=True) | models.Q(price_output__gte=0)),
                name="endpoint_prices_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key)

    @property
    def is_cloud(self) -> bool:
        """What it is sent leaves the organization's machines (redacted, capped, metered)."""
        return not self.self_hosted

    def reveal_api_key(self) -> str:
        """The plaintext key for the model client's request header, or ""; never log it."""
        key: object = self.api_key
        if not key:
            return ""
        return key.reveal() if isinstance(key, Secret) else str(key)


class EndpointLease(TenantModel):
    """One of an endpoint's `max_concurrency` slots, held by one call until it ends or expires.

    HAAO enforces each endpoint's concurrency with these rows, whichever worker or machine
    makes the call (agents.engine.routing).
    """

    endpoint = models.ForeignKey(InferenceEndpoint, on_delete=models.CASCADE,
                                 related_name="leases")
    holder = models.CharField(max_length=200, unique=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["endpoint", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.holder} on {self.endpoint_id}"


class CallRole(models.TextChoices):
    DECOMPOSE = "decompose", "Decompose a requirement"
    CODE = "code", "Write code"
    AUDIT = "audit", "Audit a diff"
    SOLVE = "solve", "Solve an escalated ticket"
    HEALTH = "health", "Health check"


class CallOutcome(models.TextChoices):
    OK = "ok", "OK"
    TIMEOUT = "timeout", "Timed out"
    CONNECTION_ERROR = "connection_error", "Could not connect"
    RATE_LIMITED = "rate_limited", "Rate limited"
    SERVER_ERROR = "server_error", "Server error"
    CLIENT_ERROR = "client_error", "Request refused"
    INVALID_OUTPUT = "invalid_output", "Invalid output"
    BLOCKED = "blocked", "Blocked by a guardrail"
    ERROR = "error", "Other error"


class ModelCall(TenantModel):
    """One call to one model: tokens, latency and its cost at the price in force then."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("tickets.Project", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+")
    requirement = models.ForeignKey("tickets.Requirement", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    ticket = models.ForeignKey("tickets.Ticket", null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="+")
    attempt = models.ForeignKey("tickets.Attempt", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+")
    # PROTECT: an endpoint with calls is disabled, not deleted, so reports keep their rows.
    endpoint = models.ForeignKey(InferenceEndpoint, on_delete=models.PROTECT,
                                 related_name="calls")
    endpoint_name = models.CharField(max_length=100)
    is_cloud = models.BooleanField(default=False)
    model = models.CharField(max_length=200)
    role = models.CharField(max_length=20, choices=CallRole.choices)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    price = models.JSONField(default=dict, help_text="The rates the cost was computed with.")
    outcome = models.CharField(max_length=20, choices=CallOutcome.choices)
    error = models.CharField(max_length=1000, blank=True)
    request_id = models.CharField(max_length=200, blank=True,
                                  help_text="The provider's id of the request.")
    redactions = models.PositiveIntegerField(default=0,
                                             help_text="Secrets redacted before the call.")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "created_at"]),
            models.Index(fields=["project", "created_at"]),
            models.Index(fields=["ticket"]),
        ]

    def __str__(self) -> str:
        return f"{self.role} call to {self.model} ({self.outcome})"

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_write_tokens
                + self.cache_read_tokens)


class DeliveryStatus(models.TextChoices):
    """Where a branch's accepted work stands against the team's remote."""

    LOCAL = "local", "Kept in HAAO"
    PENDING = "pending", "Waiting to be delivered"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Delivery failed"


class PullRequestState(models.TextChoices):
    OPEN = "open", "Open"
    MERGED = "merged", "Merged"
    CLOSED = "closed", "Closed"


class IntegrationBranch(TenantModel):
    """A branch HAAO merges accepted tickets into, and where it stands in the team's forge.

    `head` is the system of record for the branch: workers on any machine rebuild it from
    the team's remote plus the stored packs (GitPack), and move it only by compare-and-set.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("tickets.Project", on_delete=models.CASCADE,
                                related_name="integration_branches")
    requirement = models.OneToOneField(
        "tickets.Requirement", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="integration_branch",
        help_text="The requirement whose pull request it is; none for the project's branch.")
    name = models.CharField(max_length=200)
    base = models.CharField(max_length=64, help_text="The upstream commit it started from.")
    head = models.CharField(max_length=64, help_text="Its newest commit.")
    delivered_commit = models.CharField(max_length=64, blank=True,
                                        help_text="The commit last pushed to the remote.")
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices,
                              default=DeliveryStatus.LOCAL)
    failure = models.TextField(blank=True, help_text="Why the last delivery failed.")
    tries = models.PositiveSmallIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True)
    pull_request_number = models.PositiveIntegerField(null=True, blank=True)
    pull_request_url = models.CharField(max_length=1024, blank=True)
    pull_request_state = models.CharField(max_length=10, choices=PullRequestState.choices,
                                          blank=True)
    pull_request_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="integration_branch_name"),
        ]
        indexes = [models.Index(fields=["status", "next_try_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.name} at {self.head[:10]}"


class GitPack(TenantModel):
    """Commits HAAO wrote, as a git bundle: with the team's remote, enough for any worker to
    rebuild every attempt and integration commit, so no worker's disk is a system of record."""

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey("tickets.Project", on_delete=models.CASCADE,
                                related_name="git_packs")
    commit = models.CharField(max_length=64)
    prerequisites = models.JSONField(default=list,
                                     help_text="Commits the bundle builds on.")
    data = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "commit"], name="git_pack_commit"),
        ]

    def __str__(self) -> str:
        return f"pack of {self.commit[:10]}"

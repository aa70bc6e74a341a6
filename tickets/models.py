"""Projects, requirements, tickets, attempts and check results."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from haao.crypto import EncryptedTextField
from haao.tenancy import TenantModel
from tickets.keys import project_key_validator, requirement_key, ticket_key


class RepositoryAuth(models.TextChoices):
    NONE = "none", "None (a public or local repository)"
    TOKEN = "token", "HTTPS token"
    SSH_KEY = "ssh_key", "SSH deploy key"


class DeliveryMode(models.TextChoices):
    PULL_REQUEST = "pull_request", "Pull request"
    BRANCH = "branch", "Push a branch"
    NONE = "none", "Keep in HAAO"


class ForgeKind(models.TextChoices):
    GITHUB = "github", "GitHub"
    GITLAB = "gitlab", "GitLab"
    GITEA = "gitea", "Gitea / Forgejo"


class Project(TenantModel):
    """A code repository that an organization lets HAAO work on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=10, validators=[project_key_validator],
                           help_text="Prefix of ticket keys, e.g. PAY for PAY-12.")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=5000)
    repository = models.CharField(
        max_length=1024, blank=True,
        help_text="A path on the server or a git URL that HAAO clones into its workspace.")
    default_branch = models.CharField(max_length=200, default="main")
    integration_branch = models.CharField(
        max_length=200, default="haao/integration",
        help_text="Accepted tickets are merged here; a human merges it onward.")
    setup_command = models.JSONField(default=list, blank=True,
                                     help_text="argv that prepares dependencies, e.g. "
                                               '["pip", "install", "-e", "."].')
    test_command = models.JSONField(
        default=list, blank=True, help_text='argv of the project\'s tests, e.g. ["pytest", "-q"].')
    # How HAAO reaches the repository; the secrets are write-only (haao.crypto).
    auth_method = models.CharField(max_length=10, choices=RepositoryAuth.choices,
                                   default=RepositoryAuth.NONE)
    token_username = models.CharField(
        max_length=100, blank=True,
        help_text="User name sent with the token (blank: the forge's usual one).")
    token = EncryptedTextField(blank=True, default="")
    ssh_private_key = EncryptedTextField(blank=True, default="")
    ssh_public_key = models.TextField(blank=True)
    ssh_known_hosts = models.TextField(
        blank=True, help_text="The server's host keys, pinned on first contact.")
    # Where accepted work goes (agents.delivery).
    delivery = models.CharField(max_length=20, choices=DeliveryMode.choices,
                                default=DeliveryMode.NONE)
    forge = models.CharField(max_length=10, choices=ForgeKind.choices, blank=True)
    forge_api_url = models.CharField(
        max_length=1024, blank=True,
        help_text="The forge's REST API root; blank: derived from the repository's host.")
    intake_label = models.CharField(
        max_length=50, default="haao",
        help_text="An issue in the forge with this label becomes a requirement.")
    webhook_secret = EncryptedTextField(blank=True, default="")
    connection_report = models.JSONField(
        default=dict, blank=True, editable=False,
        help_text="The last connection test: when, and what it found.")
    setup_report = models.JSONField(
        default=dict, blank=True, editable=False,
        help_text="The last setup check (agents.preflight): its status, the "
                  "commit it ran at, when, and what to do about it.")
    ticket_seq = models.PositiveIntegerField(default=0, editable=False)
    requirement_seq = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="project_key_per_org")
        ]
        permissions = [("approve_project", "Decide at the gates of the project's tickets")]

    def __str__(self) -> str:
        return f"{self.key} · {self.name}"


# Direct foreign keys for guardian: per-project grants are joined, not looked up by
# content type and text id, so filtered lists stay one query.
class ProjectUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE)


class ProjectGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE)


class RequirementStatus(models.TextChoices):
    DECOMPOSING = "decomposing", "Decomposing"
    PROPOSED = "proposed", "Proposed (Gate 1)"
    APPROVED = "approved", "Approved"
    FAILED = "failed", "Decomposition failed"
    CANCELLED = "cancelled", "Cancelled"
    DELIVERED = "delivered", "Delivered"


class Requirement(TenantModel):
    """A product owner's plain-language request, decomposed into proposed tickets."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="requirements")
    number = models.PositiveIntegerField(editable=False)
    title = models.CharField(max_length=200)
    text = models.TextField(max_length=20000)
    status = models.CharField(max_length=20, choices=RequirementStatus.choices,
                              default=RequirementStatus.DECOMPOSING)
    created_by = models.ForeignKey("accounts.User", null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    approved_by = models.ForeignKey("accounts.User", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    failure = models.TextField(blank=True, help_text="Why decomposition failed.")
    issue_number = models.PositiveIntegerField(
        null=True, blank=True, help_text="The forge issue it came from, if any.")
    issue_url = models.CharField(max_length=1024, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="requirement_number"),
            models.UniqueConstraint(fields=["project", "issue_number"],
                                    condition=models.Q(issue_number__isnull=False),
                                    name="requirement_per_issue"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.title}"

    @property
    def key(self) -> str:
        return requirement_key(self.project.key, self.number)


# How a blocked ticket's reason starts when the machine failed, not the code
# (tickets.services.engine writes it; the waiting list reads it to say "ask an admin").
NEEDS_ADMIN = "Needs an admin"


class TicketStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    APPROVED = "approved", "Approved"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    ESCALATED = "escalated", "Escalated"
    AUDITING = "auditing", "Auditing"
    AWAITING_ACCEPTANCE = "awaiting_acceptance", "Awaiting acceptance"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    BLOCKED = "blocked", "Blocked"
    CANCELLED = "cancelled", "Cancelled"


class Ticket(TenantModel):
    """One atomic, testable unit of work; its state changes only through tickets.state."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tickets")
    requirement = models.ForeignKey(Requirement, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="tickets")
    number = models.PositiveIntegerField(editable=False)
    title = models.CharField(max_length=200)
    spec = models.JSONField(help_text="The validated Atomic Ticket (schema v1).")
    status = models.CharField(max_length=24, choices=TicketStatus.choices,
                              default=TicketStatus.PROPOSED, editable=False)
    status_changed_at = models.DateTimeField(default=timezone.now, editable=False)
    order = models.PositiveIntegerField(default=0)
    complexity = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)])
    dependencies = models.ManyToManyField("self", symmetrical=False, blank=True,
                                          related_name="dependents")
    retry_budget = models.PositiveSmallIntegerField(default=3)
    retries_left = models.PositiveSmallIntegerField(default=3)
    attempt_count = models.PositiveIntegerField(default=0, editable=False)
    feedback = models.TextField(blank=True, help_text="The latest reviewer feedback, given to "
                                                      "the next attempt.")
    audit_failures = models.PositiveSmallIntegerField(default=0, editable=False)
    cloud_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    merged_commit = models.CharField(max_length=64, blank=True, editable=False,
                                     help_text="The integration branch commit that merged it.")
    merged_at = models.DateTimeField(null=True, blank=True, editable=False)
    block_reason = models.TextField(blank=True)
    approved_by = models.ForeignKey("accounts.User", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey("accounts.User", null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+",
                                   help_text="Who accepted or rejected it at Gate 2.")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["project", "order", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="ticket_number")
        ]
        indexes = [
            models.Index(fields=["organization", "status", "-created_at"]),
            models.Index(fields=["project", "status"]),
            # The ticket list, newest first: unfiltered, by title, and by project
            # (see docs/benchmarks.md).
            models.Index(fields=["organization", "-created_at"], name="ticket_org_newest"),
            models.Index(fields=["project", "-created_at"], name="ticket_project_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.title}"

    @property
    def key(self) -> str:
        return ticket_key(self.project.key, self.number)


class ExecutorKind(models.TextChoices):
    LOCAL = "local", "Local model"
    CLOUD = "cloud", "Cloud model"


class AttemptOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    TESTS_FAILED = "tests_failed", "Tests failed"
    INVALID_OUTPUT = "invalid_output", "Invalid model output"
    GUARDRAIL_VIOLATION = "guardrail_violation", "Guardrail violation"
    TIMEOUT = "timeout", "Timed out"
    ERROR = "error", "Error"
    # The machine failed, not the code: no sandbox, no program, a failed setup command.
    INFRASTRUCTURE = "infrastructure", "Machine failure"


class AttemptStage(models.TextChoices):
    """Where a running attempt is; each step claims the attempt by moving it to the next."""

    PENDING = "pending", "Waiting for a model"
    CODING = "coding", "Model writing"
    ANSWERED = "answered", "Waiting for checks"
    CHECKING = "checking", "Checks running"
    DONE = "done", "Done"


class Attempt(TenantModel):
    """One try at a ticket by one model; unique per ticket and number, so it runs once.

    While it runs, the worker holding it renews `lease_expires_at`; a lease that expires
    means the worker was lost, and recovery hands the attempt to another delivery.
    `deliveries` counts claims and fences writes: only the latest claim may record results.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    executor = models.CharField(max_length=10, choices=ExecutorKind.choices)
    endpoint = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    outcome = models.CharField(max_length=24, choices=AttemptOutcome.choices,
                               default=AttemptOutcome.RUNNING)
    error = models.TextField(blank=True)
    diff = models.TextField(blank=True)
    stage = models.CharField(max_length=12, choices=AttemptStage.choices,
                             default=AttemptStage.PENDING)
    inference_endpoint = models.ForeignKey("agents.InferenceEndpoint", null=True, blank=True,
                                           on_delete=models.SET_NULL, related_name="+")
    queue = models.CharField(max_length=63, blank=True,
                             help_text="The Celery queue that runs this attempt's steps.")
    answer = models.TextField(blank=True, help_text="The model's edit blocks, as received.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    step_at = models.DateTimeField(default=timezone.now,
                                   help_text="When the attempt entered its current stage.")
    deliveries = models.PositiveSmallIntegerField(default=0)
    lost = models.PositiveSmallIntegerField(
        default=0, help_text="Times its worker was lost (lease expired) during a step.")
    worker = models.CharField(max_length=200, blank=True)
    policy_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The organization's policy version it ran under.")
    base_commit = models.CharField(max_length=64, blank=True,
                                   help_text="The commit the attempt's edits apply to.")
    commit = models.CharField(max_length=64, blank=True,
                              help_text="The attempt's commit, when its checks passed.")

    class Meta:
        # By the column, not the relation: ordering by `ticket` orders by the ticket's own
        # ordering, joining the ticket and its project into every query of attempts.
        ordering = ["ticket_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["ticket", "number"], name="attempt_number")
        ]
        indexes = [
            models.Index(fields=["stage", "lease_expires_at"], name="attempt_lease"),
            models.Index(fields=["inference_endpoint", "stage"], name="attempt_endpoint_load"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.ticket_id}"

    @property
    def tokens(self) -> int:
        """Every token of the attempt, cache reads and writes included."""
        return (self.input_tokens + self.output_tokens + self.cache_write_tokens
                + self.cache_read_tokens)

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


OUTPUT_TAIL_LIMIT = 16 * 1024


class CheckResult(TenantModel):
    """The result of one Definition-of-Done check in one attempt."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="checks")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=200)
    command = models.JSONField()
    expected_exit_code = models.SmallIntegerField(default=0)
    exit_code = models.SmallIntegerField(null=True, blank=True)
    passed = models.BooleanField()
    expectation = models.CharField(max_length=500, blank=True,
                                   help_text="What failed, when it failed.")
    duration_ms = models.PositiveIntegerField(default=0)
    stdout_tail = models.TextField(blank=True)
    stderr_tail = models.TextField(blank=True)

    class Meta:
        ordering = ["attempt_id", "index"]  # the column: no join of attempt, ticket, project
        constraints = [
            models.UniqueConstraint(fields=["attempt", "index"], name="check_index")
        ]

    def __str__(self) -> str:
        return f"{self.name}: {'passed' if self.passed else 'failed'}"

"""factory_boy factories; related objects always stay in one organization."""

from __future__ import annotations

from typing import Any

import factory
from allauth.account.models import EmailAddress

from accounts.models import Membership, Organization, User
from accounts.roles import Role
from policies.rules import BY_NAME as POLICY_RULES
from tickets.models import Project
from tickets.services.engine import Options

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    name = factory.Faker("name")

    @factory.post_generation
    def password(self: User, create: bool, extracted: str | None, **kwargs: Any) -> None:
        self.set_password(extracted or PASSWORD)
        if create:
            self.save(update_fields=["password"])
            EmailAddress.objects.create(user=self, email=self.email, verified=True, primary=True)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    organization = factory.SubFactory(OrganizationFactory)
    key = factory.Sequence(lambda n: f"P{n:03d}")
    name = factory.Sequence(lambda n: f"Project {n}")


def spec_example(**overrides: object) -> dict[str, object]:
    """A small valid Atomic Ticket spec."""
    spec: dict[str, object] = {
        "schema_version": "1",
        "title": "Round totals to cents",
        "objective": "Invoice totals must be rounded half-up to two decimals.",
        "code_context": [{"path": "billing/totals.py", "line_start": 1, "line_end": 3,
                          "content": "def total(items):\n    return sum(items)\n"}],
        "allowed_paths": ["billing/totals.py", "tests/test_totals.py"],
        "constraints": ["Do not change the public signature of total()."],
        "definition_of_done": [{"name": "unit tests", "command": ["pytest", "-q"],
                                "expected_exit_code": 0, "timeout_seconds": 120}],
        "dependencies": [],
        "complexity": 2,
    }
    spec.update(overrides)
    return spec


class RequirementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "tickets.Requirement"

    project = factory.SubFactory(ProjectFactory)
    organization = factory.SelfAttribute("project.organization")
    number = factory.Sequence(lambda n: n + 1)
    title = "Invoices round correctly"
    text = "Totals on invoices must be rounded to cents."
    status = "proposed"


class TicketFactory(factory.django.DjangoModelFactory):
    """A ticket in any state (tests only: real tickets change state through tickets.state)."""

    class Meta:
        model = "tickets.Ticket"

    requirement = factory.SubFactory(RequirementFactory)
    project = factory.SelfAttribute("requirement.project")
    organization = factory.SelfAttribute("project.organization")
    number = factory.Sequence(lambda n: n + 1)
    title = "Round totals to cents"
    spec = factory.LazyFunction(spec_example)
    complexity = 2
    status = "proposed"


def engine_options(**overrides: Any) -> Options:
    """What the engine may do for a ticket, at the policy's defaults unless overridden."""
    values: dict[str, Any] = {
        "escalation": True, "audit": True,
        "max_audit_failures": POLICY_RULES["max_audit_failures"].default,
        "max_cloud_attempts": POLICY_RULES["max_cloud_attempts"].default,
        "audit_cloud_work": POLICY_RULES["audit_work"].default == "all",
    }
    return Options(**{**values, **overrides})

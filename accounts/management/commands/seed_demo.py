"""Create the demo organization (one user per role, a demo project) once; print the logins."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services
from accounts.models import Organization, User
from accounts.roles import Role
from agents.pricing import CURRENT_SONNET
from agents.selectors import endpoints_of
from agents.services import endpoint_create
from haao.errors import ApplicationError
from tickets.models import Project
from tickets.services import project_create, project_grant_set

DEMO_SLUG = "demo"
DEMO_USERS = [
    ("admin@demo.haao.local", "Ada Admin", Role.ADMIN),
    ("po@demo.haao.local", "Pat Product-Owner", Role.PRODUCT_OWNER),
    ("manager@demo.haao.local", "Max Manager", Role.MANAGER),
    ("member@demo.haao.local", "Mel Member", Role.MEMBER),
]


class Command(BaseCommand):
    help = "Seeds the demo organization once (safe to run again) and prints its logins."

    def handle(self, *args: Any, **options: Any) -> None:
        password = self._password()
        with transaction.atomic():
            created = self._seed(password)
        self._seed_endpoints()
        self.stdout.write(("Seeded" if created else "Found") + " the demo organization.")
        self.stdout.write(f"\n  Open   {settings.BASE_URL}/o/{DEMO_SLUG}/")
        for email, _, role in DEMO_USERS:
            self.stdout.write(f"  {Role(role).label:<14} {email}  password: {password}")
        self.stdout.write("")

    def _password(self) -> str:
        # Random per installation, kept beside the database so later runs print the same one.
        path = Path(settings.DATA_DIR) / "demo-password.txt"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        password = f"demo-{secrets.token_urlsafe(9)}"
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        return password

    def _seed_endpoints(self) -> None:
        """The local coder and the Claude Tech Lead, when their settings are given; once each."""
        organization = Organization.objects.get(slug=DEMO_SLUG)
        admin = User.objects.get(email=DEMO_USERS[0][0])
        wanted = []
        if settings.LMSTUDIO_BASE_URL:
            wanted.append(({"name": "Local coder", "kind": "openai_compatible",
                            "flavor": "lm_studio", "base_url": settings.LMSTUDIO_BASE_URL,
                            "model": "local-model", "role": "coder", "price_input": "0",
                            "price_output": "0"}, ""))
        if settings.ANTHROPIC_API_KEY:
            wanted.append(({"name": "Claude", "kind": "anthropic", "model": CURRENT_SONNET,
                            "role": "tech_lead"}, settings.ANTHROPIC_API_KEY))
        existing = set(endpoints_of(organization=organization).values_list("name", flat=True))
        for values, api_key in wanted:
            if values["name"] in existing:
                continue
            try:
                endpoint_create(organization=organization, actor=admin, values=values,
                                api_key=api_key)
            except ApplicationError as error:
                # e.g. LM Studio on localhost without HAAO_ENDPOINT_ALLOWLIST=localhost,...
                self.stderr.write(f"Endpoint “{values['name']}” not added: {error.message}")

    def _seed(self, password: str) -> bool:
        if Organization.objects.filter(slug=DEMO_SLUG).exists():
            return False
        users = {}
        for email, name, _ in DEMO_USERS:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(email, password, name=name)
            EmailAddress.objects.update_or_create(
                user=user, email=email, defaults={"verified": True, "primary": True}
            )
            users[email] = user
        admin = users[DEMO_USERS[0][0]]
        organization = services.organization_create(name="Demo Organization", slug=DEMO_SLUG,
                                                    creator=admin)
        for email, _, role in DEMO_USERS[1:]:
            services.membership_add(organization=organization, user=users[email], role=role,
                                    actor=admin, via="demo seed")
        project = project_create(organization=organization, key="DEMO", name="Sample project",
                                 actor=admin,
                                 description="A small Python package with tests and a defect.")
        project_grant_set(organization=organization, project=project,
                          user=users["po@demo.haao.local"], grants={"approve"}, actor=admin)
        project_grant_set(organization=organization, project=project,
                          user=users["member@demo.haao.local"], grants={"view"}, actor=admin)
        assert Project.objects.for_org(organization).count() == 1
        return True

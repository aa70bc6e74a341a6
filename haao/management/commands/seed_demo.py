"""Create the demo organization (one user per role, a demo project) once; print the logins."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from guardian.models import UserObjectPermission

from accounts import services
from accounts.models import Organization, User
from accounts.roles import Role
from agents.models import ModelCall
from agents.pricing import CURRENT_SONNET
from agents.sandbox import sandbox_available
from agents.selectors import endpoints_of
from agents.services import endpoint_create, endpoint_update
from agents.workspaces.samples import sample_repository
from haao.errors import ApplicationError
from tickets.models import Project
from tickets.services import project_create, project_grant_set
from tickets.services.projects import project_repository_set, project_update

DEMO_SLUG = "demo"
SAMPLE_TEST_COMMAND = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
SAMPLE_CODER = "Sample models · coder"
SAMPLE_TECH_LEAD = "Sample models · Tech Lead"
SAMPLE_AUDITOR = "Sample models · auditor"
# Audits of the local coders' work go to the small Claude model: a third of Sonnet's price
# for most of its catches (the cost simulation in docs/benchmarks.md).
AUDITOR_MODEL = "claude-haiku-4-5"
DEMO_USERS = [
    ("admin@demo.haao.local", "Ada Admin", Role.ADMIN),
    ("po@demo.haao.local", "Pat Product-Owner", Role.PRODUCT_OWNER),
    ("manager@demo.haao.local", "Max Manager", Role.MANAGER),
    ("member@demo.haao.local", "Mel Member", Role.MEMBER),
]


def _password_file() -> Path:
    # Random per installation, kept beside the database so later runs print the same one.
    return Path(settings.DATA_DIR) / "demo-password.txt"


def demo_login_lines(*, base_url: str) -> list[str]:
    """Where the demo organization is and its logins; none when it is not seeded."""
    path = _password_file()
    if not path.exists() or not Organization.objects.filter(slug=DEMO_SLUG).exists():
        return []
    password = path.read_text().strip()
    return [f"  Open   {base_url.rstrip('/')}/o/{DEMO_SLUG}/",
            *(f"  {Role(role).label:<14} {email}  password: {password}"
              for email, _, role in DEMO_USERS)]


class Command(BaseCommand):
    help = "Seeds the demo organization once (safe to run again) and prints its logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset", action="store_true",
                            help="Delete the demo organization's data (and its sample "
                                 "repository copy and checkouts) first, then seed it again; "
                                 "other organizations are not touched.")
        parser.add_argument("--no-logins", action="store_true",
                            help="Do not print the logins (`manage.py serve` prints them once "
                                 "it is up, as `make run` does).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reset"]:
            self._reset()
        password = self._password()
        with transaction.atomic():
            created = self._seed(password)
        self._seed_endpoints()
        self._seed_repository()
        self.stdout.write(("Seeded" if created else "Found") + " the demo organization.")
        if not options["no_logins"]:
            self.stdout.write("")
            for line in demo_login_lines(base_url=settings.BASE_URL):
                self.stdout.write(line)
            self.stdout.write("")

    def _reset(self) -> None:
        """Delete the demo organization and everything of it, then its files on disk."""
        organization = Organization.objects.filter(slug=DEMO_SLUG).first()
        if organization is None:
            self.stdout.write("No demo organization to reset.")
            return
        projects = list(Project.objects.for_org(organization))
        ids = [str(project.pk) for project in projects]
        repositories = {project.repository for project in projects if project.repository}
        with transaction.atomic():
            # The ledger's rows PROTECT their endpoints; they go first, with the organization.
            ModelCall.objects.for_org(organization).delete()
            UserObjectPermission.objects.filter(
                content_type=ContentType.objects.get_for_model(Project),
                object_pk__in=ids).delete()
            organization.delete()
        data_dir = Path(settings.DATA_DIR).resolve()
        for project_id in ids:
            shutil.rmtree(Path(settings.HAAO_WORKSPACE_ROOT) / project_id, ignore_errors=True)
        for repository in repositories:
            path = Path(repository).resolve()
            # Only HAAO's own copy under the data directory, and only if no other
            # organization's project works on it.
            if (path.is_relative_to(data_dir) and path.is_dir()
                    and not Project.objects.filter(repository=repository).exists()):
                shutil.rmtree(path, ignore_errors=True)
        self.stdout.write("Deleted the demo organization and its data.")

    def _password(self) -> str:
        path = _password_file()
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        password = f"demo-{secrets.token_urlsafe(9)}"
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        return password

    def _seed_endpoints(self) -> None:
        """The demo's models: real ones when their settings are given, else the sample models
        (sample_models/demo.py) that `manage.py serve` starts; kept in step each run."""
        organization = Organization.objects.get(slug=DEMO_SLUG)
        admin = User.objects.get(email=DEMO_USERS[0][0])
        sample_port = settings.HAAO_SAMPLE_MODELS_PORT
        coder: tuple[dict[str, Any], str] | None = None
        if settings.LMSTUDIO_BASE_URL:
            coder = ({"name": "Local coder", "kind": "openai_compatible", "flavor": "lm_studio",
                      "base_url": settings.LMSTUDIO_BASE_URL, "model": "local-model",
                      "role": "coder", "price_input": "0", "price_output": "0"}, "")
        elif settings.HAAO_DEMO_LOCAL_MODEL:
            coder = ({"name": "Local model (SmolLM2)", "kind": "openai_compatible",
                      "flavor": "llama_cpp", "model": "smollm2", "role": "coder",
                      "base_url": f"http://127.0.0.1:{settings.HAAO_DEMO_LOCAL_MODEL_PORT}/v1",
                      "price_input": "0", "price_output": "0"}, "")
        elif settings.HAAO_SAMPLE_MODELS:
            coder = ({"name": SAMPLE_CODER, "kind": "openai_compatible", "flavor": "lm_studio",
                      "base_url": f"http://127.0.0.1:{sample_port + 1}/v1",
                      "model": "sample-coder", "role": "coder", "price_input": "0",
                      "price_output": "0"}, "")
        tech_lead: tuple[dict[str, Any], str] | None = None
        if settings.ANTHROPIC_API_KEY:
            tech_lead = ({"name": "Claude", "kind": "anthropic", "model": CURRENT_SONNET,
                          "role": "tech_lead"}, settings.ANTHROPIC_API_KEY)
        elif settings.HAAO_SAMPLE_MODELS:
            # Priced as the model it stands in for, so the cost reports read like real ones.
            tech_lead = ({"name": SAMPLE_TECH_LEAD, "kind": "anthropic", "model": CURRENT_SONNET,
                          "base_url": f"http://127.0.0.1:{sample_port}", "role": "tech_lead"},
                         "sample-key")
        auditor: tuple[dict[str, Any], str] | None = None
        if tech_lead is not None:
            name = SAMPLE_AUDITOR if tech_lead[0]["name"] == SAMPLE_TECH_LEAD else \
                "Claude Haiku · auditor"
            auditor = ({**tech_lead[0], "name": name, "model": AUDITOR_MODEL,
                        "role": "auditor"}, tech_lead[1])
        existing = {e.name: e for e in endpoints_of(organization=organization)}
        wanted = [item for item in (coder, tech_lead, auditor) if item is not None]
        for values, api_key in wanted:
            try:
                current = existing.get(values["name"])
                if current is None:
                    endpoint_create(organization=organization, actor=admin, values=values,
                                    api_key=api_key)
                elif (current.base_url != values.get("base_url", current.base_url)
                      or not current.enabled):
                    # A new address needs the key again (it is sent only where entered).
                    endpoint_update(organization=organization, endpoint=current, actor=admin,
                                    changes={"base_url": values.get("base_url",
                                                                    current.base_url),
                                             "enabled": True}, api_key=api_key)
            except ApplicationError as error:
                # e.g. LM Studio on localhost without HAAO_ENDPOINT_ALLOWLIST=localhost,...
                self.stderr.write(f"Endpoint “{values['name']}” not added: {error.message}")
        # A sample model steps aside once a real one does its part.
        names = {values["name"] for values, _ in wanted}
        for sample in (SAMPLE_CODER, SAMPLE_TECH_LEAD, SAMPLE_AUDITOR):
            endpoint = existing.get(sample)
            if endpoint is not None and endpoint.enabled and sample not in names:
                endpoint_update(organization=organization, endpoint=endpoint, actor=admin,
                                changes={"enabled": False})
        if settings.HAAO_SAMPLE_MODELS and ((coder and coder[0]["name"] == SAMPLE_CODER)
                                            or (tech_lead and tech_lead[0]["name"]
                                            == SAMPLE_TECH_LEAD)):
            self.stdout.write("Models: the sample models (scripted, on 127.0.0.1) stand in "
                              "where no key is set; see README “Models”.")

    def _seed_repository(self) -> None:
        """The sample project's code as the demo project's repository, created once."""
        organization = Organization.objects.get(slug=DEMO_SLUG)
        project = Project.objects.for_org(organization).filter(key="DEMO").first()
        if project is None:
            return
        admin = User.objects.get(email=DEMO_USERS[0][0])
        if not project.test_command:
            # The sample's own tests: every ticket's checks include them, and "Check setup"
            # runs them on the default branch before any model is called.
            project = project_update(project=project, actor=admin,
                                     changes={"test_command": SAMPLE_TEST_COMMAND})
        if project.repository:
            return
        repository = sample_repository(Path(settings.DATA_DIR) / "samples")
        project_repository_set(project=project, repository=str(repository), actor=admin)
        if not sandbox_available():
            # Without bubblewrap the demo's checks could not run at all; the sample code is
            # HAAO's own, and every such attempt carries a warning that it ran unsandboxed.
            services.organization_set_unsandboxed(
                organization=organization, allowed=True,
                actor=User.objects.get(email=DEMO_USERS[0][0]),
                reason="Demo on a machine without bubblewrap: sample code from HAAO itself.")
            self.stdout.write("bubblewrap is not installed: the demo organization runs checks "
                              "WITHOUT a sandbox (apt-get install bubblewrap, then turn it off "
                              "under Security).")

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

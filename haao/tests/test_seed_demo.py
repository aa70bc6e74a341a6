"""`manage.py seed_demo --reset` starts the demo over; other organizations keep their data."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import Organization, User
from agents import ledger
from agents import services as agents_services
from agents.models import ModelCall
from haao.models import AuditEvent
from tests.factories import RequirementFactory
from tickets.models import Project, Requirement

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def demo_settings(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.HAAO_WORKSPACE_ROOT = tmp_path / "workspaces"
    settings.HAAO_SAMPLE_MODELS = True
    settings.LMSTUDIO_BASE_URL = None
    settings.ANTHROPIC_API_KEY = None
    return settings


def test_reset_deletes_the_demos_work_and_seeds_it_again_leaving_others_alone(
        cast, demo_settings, tmp_path: Path) -> None:
    first = seed()
    demo = Organization.objects.get(slug="demo")
    project = Project.objects.get(organization=demo, key="DEMO")
    repository = Path(project.repository)
    (repository / "scratch.txt").write_text("work of the old demo")
    checkout = tmp_path / "workspaces" / str(project.pk)
    checkout.mkdir(parents=True)
    RequirementFactory(project=project, organization=demo, title="Old demo work")
    admin = User.objects.get(email="admin@demo.haao.local")
    endpoint = agents_services.endpoint_create(
        organization=demo, actor=admin,
        values={"name": "GPU box", "kind": "openai_compatible", "flavor": "lm_studio",
                "base_url": "http://93.184.215.14:1234/v1", "model": "qwen", "role": "coder"})
    ledger.model_call_record(organization=demo, endpoint=endpoint, role="decompose",
                                      outcome="ok", input_tokens=10)
    theirs = RequirementFactory(project=cast.project, organization=cast.org)
    their_events = AuditEvent.objects.for_org(cast.org).count()

    again = seed()  # without --reset: kept as it is
    assert "Found the demo organization" in again
    assert Requirement.objects.filter(title="Old demo work").exists()

    reset = seed("--reset")
    assert "Deleted the demo organization" in reset and "Seeded the demo organization" in reset
    fresh = Organization.objects.get(slug="demo")
    assert fresh.pk != demo.pk
    assert not Requirement.objects.filter(title="Old demo work").exists()
    assert not ModelCall.objects.filter(organization_id=demo.pk).exists()
    new_project = Project.objects.get(organization=fresh, key="DEMO")
    assert Path(new_project.repository).is_dir() and not (repository / "scratch.txt").exists()
    assert not checkout.exists()
    # The same logins: the users and the password are kept.
    assert first.split("password: ")[1].split()[0] == reset.split("password: ")[1].split()[0]
    # Another organization is untouched.
    assert Requirement.objects.filter(pk=theirs.pk).exists()
    assert AuditEvent.objects.for_org(cast.org).count() == their_events

"""The demo seed adds the local coder and Claude endpoints when configured, once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from agents.models import InferenceEndpoint
from agents.pricing import CURRENT_SONNET

pytestmark = pytest.mark.django_db


def seed() -> str:
    err = StringIO()
    call_command("seed_demo", stdout=StringIO(), stderr=err)
    return err.getvalue()


def test_without_model_settings_the_demo_has_no_endpoint(settings) -> None:
    settings.LMSTUDIO_BASE_URL = None
    settings.ANTHROPIC_API_KEY = None
    seed()
    assert not InferenceEndpoint.objects.exists()


def test_configured_endpoints_are_added_once_with_the_key_encrypted(settings,
                                                                    monkeypatch) -> None:
    settings.LMSTUDIO_BASE_URL = "http://127.0.0.1:1234/v1"
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    settings.ANTHROPIC_API_KEY = "sk-ant-demo"
    # No DNS in tests: api.anthropic.com "resolves" to a public address.
    monkeypatch.setattr("haao.ssrf.socket.getaddrinfo",
                        lambda *a, **k: [(2, 1, 6, "", ("160.79.104.10", 443))])
    seed()
    seed()
    local = InferenceEndpoint.objects.get(name="Local coder")
    assert (local.kind, local.flavor, local.model, local.role) == (
        "openai_compatible", "lm_studio", "local-model", "coder")
    assert local.price_input == 0 and local.price_output == 0
    claude = InferenceEndpoint.objects.get(name="Claude")
    assert claude.model == CURRENT_SONNET and claude.role == "tech_lead"
    assert claude.reveal_api_key() == "sk-ant-demo"
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM agents_inferenceendpoint WHERE name = 'Claude'")
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and "sk-ant-demo" not in stored
    auditor = InferenceEndpoint.objects.get(name="Claude Haiku · auditor")
    assert (auditor.model, auditor.role) == ("claude-haiku-4-5", "auditor")
    assert auditor.reveal_api_key() == "sk-ant-demo"
    assert InferenceEndpoint.objects.count() == 3


def test_a_local_url_without_the_allowlist_is_skipped_with_a_reason(settings) -> None:
    settings.LMSTUDIO_BASE_URL = "http://localhost:1234/v1"
    settings.HAAO_ENDPOINT_ALLOWLIST = []
    settings.ANTHROPIC_API_KEY = None
    assert "HAAO_ENDPOINT_ALLOWLIST" in seed()
    assert not InferenceEndpoint.objects.exists()


def test_without_keys_the_sample_models_stand_in_and_step_aside_for_real_ones(
        settings, monkeypatch, tmp_path) -> None:
    from tickets.models import Project

    settings.DATA_DIR = tmp_path
    settings.LMSTUDIO_BASE_URL = None
    settings.ANTHROPIC_API_KEY = None
    settings.HAAO_SAMPLE_MODELS = True
    settings.HAAO_SAMPLE_MODELS_PORT = 8100
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    seed()
    endpoints = {e.name: (e.kind, e.role, e.base_url, e.enabled)
                 for e in InferenceEndpoint.objects.all()}
    assert endpoints == {
        "Sample models · Tech Lead": ("anthropic", "tech_lead", "http://127.0.0.1:8100", True),
        "Sample models · auditor": ("anthropic", "auditor", "http://127.0.0.1:8100", True),
        "Sample models · coder": ("openai_compatible", "coder", "http://127.0.0.1:8101/v1",
                                  True)}
    # The demo project works on a git copy of the sample project.
    repository = Project.objects.get(key="DEMO").repository
    assert repository == str(tmp_path / "samples" / "invoice-calc")
    assert (tmp_path / "samples" / "invoice-calc" / ".git").is_dir()

    # Another port on the next run moves the sample endpoints with it.
    settings.HAAO_SAMPLE_MODELS_PORT = 8200
    seed()
    assert InferenceEndpoint.objects.get(name="Sample models · coder").base_url == \
        "http://127.0.0.1:8201/v1"

    # A real Tech Lead key: Claude takes the part, the sample Tech Lead steps aside.
    settings.ANTHROPIC_API_KEY = "sk-ant-demo"
    monkeypatch.setattr("haao.ssrf.socket.getaddrinfo",
                        lambda *a, **k: [(2, 1, 6, "", ("160.79.104.10", 443))])
    seed()
    enabled = set(InferenceEndpoint.objects.filter(enabled=True).values_list("name", flat=True))
    assert enabled == {"Claude", "Claude Haiku · auditor", "Sample models · coder"}

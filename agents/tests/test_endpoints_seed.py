"""The demo seed adds the local coder and Claude endpoints when configured, once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from agents.models import InferenceEndpoint

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
    monkeypatch.setattr("agents.ssrf.socket.getaddrinfo",
                        lambda *a, **k: [(2, 1, 6, "", ("160.79.104.10", 443))])
    seed()
    seed()
    local = InferenceEndpoint.objects.get(name="Local coder")
    assert (local.kind, local.flavor, local.model, local.role) == (
        "openai_compatible", "lm_studio", "local-model", "coder")
    assert local.price_input == 0 and local.price_output == 0
    claude = InferenceEndpoint.objects.get(name="Claude")
    assert claude.model == "claude-sonnet-4-5" and claude.role == "tech_lead"
    assert claude.reveal_api_key() == "sk-ant-demo"
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM agents_inferenceendpoint WHERE name = 'Claude'")
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and "sk-ant-demo" not in stored
    assert InferenceEndpoint.objects.count() == 2


def test_a_local_url_without_the_allowlist_is_skipped_with_a_reason(settings) -> None:
    settings.LMSTUDIO_BASE_URL = "http://localhost:1234/v1"
    settings.HAAO_ENDPOINT_ALLOWLIST = []
    settings.ANTHROPIC_API_KEY = None
    assert "HAAO_ENDPOINT_ALLOWLIST" in seed()
    assert not InferenceEndpoint.objects.exists()

"""Start-up refuses a missing or malformed variable and names it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# Not inherited by the checked process: its own defaults are what is being checked.
NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def run_check(**overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("variable,value,message", [
    ("SECRET_KEY", None, "Set the environment variable SECRET_KEY"),
    ("HAAO_ENCRYPTION_KEYS", None, "HAAO_ENCRYPTION_KEYS"),
    ("DATABASE_URL", "mysql://x", "DATABASE_URL must start with one of"),
    ("REDIS_URL", "http://127.0.0.1", "REDIS_URL must start with one of"),
    ("DEBUG", "maybe", "DEBUG must be true or false"),
    ("HAAO_TASK_TIME_LIMIT", "soon", "HAAO_TASK_TIME_LIMIT must be a whole number"),
    ("LMSTUDIO_BASE_URL", "localhost:1234", "LMSTUDIO_BASE_URL must start with one of"),
    # A visibility timeout under the task limit would hand running tasks to a second worker.
    ("HAAO_BROKER_VISIBILITY_TIMEOUT", "1000",
     "HAAO_BROKER_VISIBILITY_TIMEOUT (1000 s) must be above HAAO_TASK_TIME_LIMIT (1800 s)"),
    ("HAAO_ATTEMPT_LEASE_SECONDS", "1", "HAAO_ATTEMPT_LEASE_SECONDS must be at least 3"),
    ("HAAO_CHECK_TOOLCHAIN", "venv", "HAAO_CHECK_TOOLCHAIN: venv is not an absolute path"),
    ("HAAO_SAMPLE_MODELS_PORT", "65535", "must be TCP ports"),
])
def test_a_bad_variable_stops_start_up_naming_it(variable, value, message) -> None:
    result = run_check(**{variable: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_a_good_environment_starts() -> None:
    result = run_check()
    assert result.returncode == 0, result.stderr


def test_claude_api_key_is_an_alias_of_anthropic_api_key(monkeypatch) -> None:
    from haao.settings import env

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("CLAUDE_API_KEY", "sk-ant-test")
    assert env.optional("ANTHROPIC_API_KEY", "CLAUDE_API_KEY") == "sk-ant-test"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-primary")
    assert env.optional("ANTHROPIC_API_KEY", "CLAUDE_API_KEY") == "sk-ant-primary"


def test_production_settings_pass_the_deploy_check() -> None:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(DEBUG="false", HAAO_HTTPS="true", HAAO_BASE_URL="https://haao.example.com",
               ALLOWED_HOSTS="haao.example.com",
               SECRET_KEY="Zq8v2L0x" * 8)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy",
                             "--fail-level", "WARNING"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_lm_studio_host_and_port_are_allowed_for_model_endpoints() -> None:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(LMSTUDIO_BASE_URL="http://localhost:1234/v1", HAAO_ENDPOINT_ALLOWLIST="10.0.0.5",
               DJANGO_SETTINGS_MODULE="haao.settings")
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(','.join(settings.HAAO_ENDPOINT_ALLOWLIST))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    # Its port only: the machine's other local services stay out of reach.
    assert result.stdout.strip() == "10.0.0.5,localhost:1234", result.stderr

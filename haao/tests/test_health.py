"""/health answers for the database, cache, broker, channel layer and the checks' sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Organization
from agents import failures
from agents.sandbox import sandbox_available
from haao import health


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "_sandbox_seen", None)


def broken_sandbox(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    probes: list[int] = []

    def probe() -> tuple[str, str]:
        probes.append(1)
        return "`python3` is not found inside the sandbox: …; an admin can …", ""

    monkeypatch.setattr(health, "sandbox_probe", probe)
    return probes


def test_health_is_200_when_every_part_answers(client, db) -> None:
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "broker", "channel_layer", "sandbox"}


@pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here")
def test_health_says_the_sandbox_runs_the_default_toolchain_here(client, db) -> None:
    sandbox = client.get("/health").json()["checks"]["sandbox"]
    assert sandbox["ok"] is True and sandbox["required"] is False  # no organization yet


def test_a_broken_sandbox_fails_health_while_an_organization_needs_it(
        client, cast: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    probes = broken_sandbox(monkeypatch)
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 503 and body["failed"] == ["sandbox"]
    assert body["checks"]["sandbox"]["error"].startswith("`python3` is not found inside")
    client.get("/health")
    assert len(probes) == 1  # the probe's answer is kept a while


def test_a_broken_sandbox_is_a_warning_where_every_organization_may_run_unsandboxed(
        client, cast: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    broken_sandbox(monkeypatch)
    Organization.objects.update(allow_unsandboxed_checks=True)
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert (body["failed"], body["warnings"]) == ([], ["sandbox"])
    assert body["checks"]["sandbox"] | {"ms": 0} == {
        "ok": False, "required": False, "ms": 0,
        "error": "`python3` is not found inside the sandbox: …; an admin can …"}


def test_health_is_503_and_names_the_part_that_failed(client, db, monkeypatch) -> None:
    def broken() -> None:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert "connection refused" in body["checks"]["broker"]["error"]


@pytest.mark.django_db
def test_health_reports_an_unreachable_broker_for_real(client, settings) -> None:
    from haao.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/health")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert "broker" in response.json()["failed"]


def overview_of(user: Any) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.get("/o/acme/").content.decode()


@pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here")
def test_an_admin_reads_on_the_overview_that_the_sandbox_works_and_with_what(cast: Any) -> None:
    import subprocess
    import sys

    page = overview_of(cast.admin)

    bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True,
                           check=True).stdout.split()[-1]
    assert f"Sandbox: working (bubblewrap {bwrap}, python {sys.version.split()[0]} at /" in page
    assert 'data-testid="sandbox-status"' in page


def test_an_admin_reads_why_the_sandbox_does_not_work_and_a_member_reads_nothing(
        cast: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failures, "sandbox_available", lambda: False)  # no bubblewrap here

    page = overview_of(cast.admin)

    assert "Sandbox: not working on this server. Checks cannot run: bubblewrap is not " \
           "available on this worker" in page
    assert "apt-get install bubblewrap util-linux" in page
    assert "Sandbox:" not in overview_of(cast.member)

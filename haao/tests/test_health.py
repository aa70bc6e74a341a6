"""/health answers for the database, cache, broker and channel layer."""

from __future__ import annotations

import pytest

from haao import health


def test_health_is_200_when_every_part_answers(client, db) -> None:
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "broker", "channel_layer"}


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

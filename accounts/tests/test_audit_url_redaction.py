"""A URL with credentials stored in the audit log before such URLs were refused is shown with
its user name and password redacted by every reader: the console page, the CSV, the API."""

from __future__ import annotations

import pytest
from django.test import Client

from haao.audit import Actor, audit_record, seal
from tests.fixtures import token_client

pytestmark = pytest.mark.django_db

URL = "https://deploy-bot:ghp_s3cretT0ken@git.example.com/acme/app.git"


def test_every_reader_of_the_audit_log_redacts_credentials_in_urls(cast) -> None:
    audit_record(organization=cast.org, actor=Actor.of(cast.admin), type="project.updated",
                 target=cast.project, data={"changes": {"repository_url": {
                     "before": "", "after": URL}}, "note": f"cloned {URL} at main"})
    seal(cast.org.pk)  # the writers' commits seal their events
    browser = Client()
    browser.force_login(cast.admin)
    page = browser.get("/o/acme/admin/audit/")
    csv = browser.get("/o/acme/admin/audit.csv")
    api = token_client(cast.org, cast.admin, ["read"]).get("/api/v1/orgs/acme/audit-events/")
    for shown in (page.content.decode(), b"".join(csv.streaming_content).decode()
                  if csv.streaming else csv.content.decode(), api.content.decode()):
        assert "ghp_s3cretT0ken" not in shown and "deploy-bot" not in shown
        assert "***@git.example.com/acme/app.git" in shown

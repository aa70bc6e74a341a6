"""Migration 0004: listed SSO routing domains become unverified domain claims."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("accounts", "0003_organization_allow_unsandboxed_checks")]
AFTER = [("accounts", "0004_organization_domain")]


@pytest.mark.django_db(transaction=True)
def test_listed_domains_become_claims_that_grant_nothing() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    org = old.get_model("accounts", "Organization").objects.create(slug="acme", name="Acme")
    old.get_model("accounts", "SSOConnection").objects.create(
        organization=org, protocol="oidc", email_domains=["acme.test", "corp.acme.test"])

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    rows = new.get_model("accounts", "OrganizationDomain").objects.order_by("domain")

    assert [(r.domain, r.verified_at, bool(r.token)) for r in rows] == [
        ("acme.test", None, True), ("corp.acme.test", None, True)]
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

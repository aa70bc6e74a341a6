"""Domains page: an admin adds a domain, sees the TXT record to publish, verifies, removes."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import OrganizationDomain
from accounts.sso import domains
from accounts.tests.domains import verify_domain

URL = "/o/acme/admin/sso/domains/"


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    records: dict[str, list[str]] = {}
    monkeypatch.setattr(domains, "txt_records", lambda name: records.get(name, []))
    return records


def test_an_admin_adds_a_domain_and_sees_the_record_to_publish(cast, admin_portal):
    response = admin_portal.post(URL, {"domain": "Acme.Test"}, follow=True)

    claim = OrganizationDomain.objects.for_org(cast.org).get()
    body = response.content.decode()
    assert claim.domain == "acme.test"
    assert "_haao.acme.test" in body and f"haao-verification={claim.token}" in body
    assert "Not verified" in body and ">Verify<" in body


def test_a_bad_domain_is_a_form_error(cast, admin_portal):
    response = admin_portal.post(URL, {"domain": "not a domain"})

    assert response.status_code == 400
    assert "is not a domain name" in response.content.decode()
    assert not OrganizationDomain.objects.exists()


def test_verify_succeeds_with_the_record_and_says_why_it_failed_without(
    cast, admin_portal, dns
):
    admin_portal.post(URL, {"domain": "acme.test"})
    claim = OrganizationDomain.objects.for_org(cast.org).get()
    verify_url = f"{URL}{claim.pk}/verify/"

    failed = admin_portal.post(verify_url, follow=True).content.decode()
    assert "No TXT record" in failed and "Not verified" in failed

    dns["_haao.acme.test"] = [domains.record_value(claim.token)]
    verified = admin_portal.post(verify_url, follow=True).content.decode()

    assert "acme.test is verified." in verified
    claim.refresh_from_db()
    assert claim.is_verified


def test_the_sso_page_warns_until_a_domain_is_verified(cast, admin_portal):
    assert "No verified email domain." in admin_portal.get("/o/acme/admin/sso/").content.decode()

    verify_domain(cast.org, "acme.test", cast.admin)

    body = admin_portal.get("/o/acme/admin/sso/").content.decode()
    assert "No verified email domain." not in body
    assert "Verified email domains: acme.test." in body


def test_an_admin_removes_a_domain(cast, admin_portal):
    claim = verify_domain(cast.org, "acme.test", cast.admin)

    admin_portal.post(f"{URL}{claim.pk}/remove/")

    assert not OrganizationDomain.objects.filter(pk=claim.pk).exists()


def test_a_manager_may_not_manage_domains_and_another_orgs_domain_is_not_found(cast):
    client = Client()
    client.force_login(cast.manager)
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"domain": "acme.test"}).status_code == 403

    globex = verify_domain(cast.other_org, "globex.test", cast.outsider)
    admin = Client()
    admin.force_login(cast.admin)
    assert admin.post(f"{URL}{globex.pk}/remove/").status_code == 404
    assert admin.post(f"{URL}{globex.pk}/verify/").status_code == 404
    assert OrganizationDomain.objects.filter(pk=globex.pk).exists()

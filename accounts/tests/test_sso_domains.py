"""Email domains: claimed by an admin, proven by a DNS TXT record, owned by one organization."""

from __future__ import annotations

import pytest

from accounts.models import OrganizationDomain
from accounts.sso import domains, services
from accounts.sso.selectors import sso_connection_for, verified_domains
from accounts.tests.domains import verify_domain
from haao.errors import ApplicationError, Conflict, Forbidden
from tests.fixtures import last_event


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    """The TXT records the stubbed resolver answers, by name; every test edits it."""
    records: dict[str, list[str]] = {}
    monkeypatch.setattr(domains, "txt_records", lambda name: records.get(name, []))
    return records


def add(cast, domain: str = "Acme.TEST"):
    return services.organization_domain_add(organization=cast.org, domain=domain,
                                            actor=cast.admin)


def verify(cast, claim):
    return services.organization_domain_verify(organization=cast.org, domain=claim,
                                               actor=cast.admin)


def test_adding_a_domain_stores_its_normal_form_unverified_and_audits(cast):
    claim = add(cast, " @Bücher.Acme.Test. ")

    assert claim.domain == "xn--bcher-kva.acme.test"
    assert claim.verified_at is None and len(claim.token) >= 24
    event = last_event(cast.org)
    assert (event.type, event.target_label, event.actor_user) == (
        "domain.added", "xn--bcher-kva.acme.test", cast.admin)
    assert event.data == {"record_name": "_haao.xn--bcher-kva.acme.test"}
    assert verified_domains(organization=cast.org) == set()


@pytest.mark.parametrize("value", ["not a domain", "acme", "-bad-.test", "a@b@c"])
def test_a_malformed_domain_is_refused(cast, value):
    with pytest.raises(ApplicationError, match="is not a domain name"):
        add(cast, value)


def test_only_an_admin_manages_domains(cast):
    with pytest.raises(Forbidden):
        services.organization_domain_add(organization=cast.org, domain="acme.test",
                                         actor=cast.manager)
    with pytest.raises(Forbidden):
        services.organization_domain_add(organization=cast.org, domain="acme.test",
                                         actor=cast.outsider)


def test_the_same_domain_cannot_be_listed_twice(cast):
    add(cast)
    with pytest.raises(Conflict, match="listed already"):
        add(cast, "acme.test")


@pytest.mark.parametrize("where", ["_haao.acme.test", "acme.test"])
def test_the_right_txt_record_verifies_the_domain(cast, dns, where):
    claim = add(cast)
    dns[where] = ["v=spf1 -all", domains.record_value(claim.token)]

    verified = verify(cast, claim)

    assert verified.is_verified and verified.method == "dns_txt"
    assert verified_domains(organization=cast.org) == {"acme.test"}
    event = last_event(cast.org)
    assert (event.type, event.target_label) == ("domain.verified", "acme.test")


def test_a_wrong_or_missing_record_does_not_verify_and_says_what_to_publish(cast, dns):
    claim = add(cast)
    dns["_haao.acme.test"] = ["haao-verification=someone-elses-token"]

    with pytest.raises(ApplicationError) as raised:
        verify(cast, claim)

    assert raised.value.code == "domain_not_verified"
    assert f"haao-verification={claim.token}" in raised.value.message
    assert "_haao.acme.test" in raised.value.message
    claim.refresh_from_db()
    assert claim.verified_at is None
    event = last_event(cast.org)
    assert (event.type, event.data) == ("domain.verification_failed",
                                        {"reason": "record not found"})


def test_a_domain_another_organization_verified_cannot_be_verified_or_added(cast, dns):
    claim = add(cast)  # Acme claimed it first, but Globex proves it first
    verify_domain(cast.other_org, "acme.test", cast.outsider)
    dns["_haao.acme.test"] = [domains.record_value(claim.token)]

    with pytest.raises(Conflict, match="verified by another organization"):
        verify(cast, claim)

    claim.refresh_from_db()
    assert claim.verified_at is None
    assert last_event(cast.org).data == {"reason": "verified by another organization"}
    with pytest.raises(Conflict, match="verified by another organization"):
        services.organization_domain_add(organization=cast.org, domain="ACME.test",
                                         actor=cast.admin)


def test_removing_a_domain_ends_what_it_granted_and_audits(cast):
    claim = verify_domain(cast.org, "acme.test", cast.admin)

    services.organization_domain_remove(organization=cast.org, domain=claim, actor=cast.admin)

    assert not OrganizationDomain.objects.filter(pk=claim.pk).exists()
    assert verified_domains(organization=cast.org) == set()
    event = last_event(cast.org)
    assert (event.type, event.data) == ("domain.removed", {"was_verified": True})


def test_a_domain_of_another_organization_cannot_be_verified_or_removed_through_this_one(cast):
    claim = services.organization_domain_add(organization=cast.other_org, domain="globex.test",
                                             actor=cast.outsider)

    with pytest.raises(ApplicationError, match="not listed"):
        verify(cast, claim)
    with pytest.raises(ApplicationError, match="not listed"):
        services.organization_domain_remove(organization=cast.org, domain=claim,
                                            actor=cast.admin)
    assert OrganizationDomain.objects.filter(pk=claim.pk).exists()


def test_the_resolver_reads_txt_records_without_the_network(monkeypatch):
    class Answer(list):
        pass

    class Rdata:
        strings = (b"haao-verification=", b"abc")

    class Resolver:
        lifetime = 0.0

        def resolve(self, name, kind):
            assert (name, kind) == ("_haao.acme.test", "TXT")
            return Answer([Rdata()])

    monkeypatch.setattr(domains.dns.resolver, "Resolver", Resolver)

    assert domains.txt_records("_haao.acme.test") == ["haao-verification=abc"]


def test_a_verified_domain_routes_sign_in_with_sso_to_its_owner(cast):
    from accounts import services as account_services

    for org, actor, listed in ((cast.org, cast.admin, []),
                               (cast.other_org, cast.outsider, ["acme.test"])):
        account_services.sso_connection_save(
            organization=org, actor=actor, client_secret="s",
            fields={"protocol": "oidc", "oidc_issuer": f"https://{org.slug}.test",
                    "oidc_client_id": "haao", "email_domains": listed})
    verify_domain(cast.org, "acme.test", cast.admin)

    found = sso_connection_for(identifier="ann@acme.test")

    assert found is not None and found.organization == cast.org


def test_the_last_verified_domain_stays_while_sso_is_required(cast):
    from accounts import services as account_services

    account_services.sso_connection_save(
        organization=cast.org, actor=cast.admin, client_secret="s",
        fields={"protocol": "oidc", "oidc_issuer": "https://acme.test", "oidc_client_id": "h"})
    claim = verify_domain(cast.org, "acme.test", cast.admin)
    account_services.organization_set_sso_policy(organization=cast.org, actor=cast.admin,
                                                 sso_required=True, break_glass_user=None)

    with pytest.raises(Conflict, match="last verified domain"):
        services.organization_domain_remove(organization=cast.org, domain=claim,
                                            actor=cast.admin)

    assert OrganizationDomain.objects.filter(pk=claim.pk).exists()
    verify_domain(cast.org, "corp.acme.test", cast.admin)
    services.organization_domain_remove(organization=cast.org, domain=claim, actor=cast.admin)
    assert verified_domains(organization=cast.org) == {"corp.acme.test"}

"""SSO page: the secret is write-only, bad input never reaches the stored connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.forms.models import model_to_dict

from accounts import services
from accounts.models import Organization, SSOConnection
from accounts.tests.domains import verify_domain
from haao.models import AuditEvent
from tests.factories import MembershipFactory
from tests.fixtures import last_event

SECRET = "s3cr3t-stored-value-xyz"


@pytest.fixture
def oidc(cast) -> SSOConnection:
    return services.sso_connection_save(
        organization=cast.org, actor=cast.admin, client_secret=SECRET,
        fields={"protocol": "oidc", "oidc_issuer": "https://idp.example.com",
                "oidc_client_id": "haao", "email_domains": ["acme.test"]})


def certificate_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def oidc_post(**overrides: str) -> dict[str, str]:
    data = {"protocol": "oidc", "enabled": "on", "email_domains": "acme.test",
            "default_role": "member", "oidc_issuer": "https://idp.example.com",
            "oidc_client_id": "haao", "client_secret": ""}
    data.update(overrides)
    return data


def row(org) -> dict:
    connection = SSOConnection.objects.for_org(org).first()
    if connection is None:
        return {}
    values = model_to_dict(connection)
    values["oidc_client_secret"] = (connection.oidc_client_secret.reveal()
                                    if connection.oidc_client_secret else "")
    return values


def test_the_page_shows_what_the_identity_providers_admin_needs(cast, admin_portal, settings):
    settings.BASE_URL = "https://haao.example.com"
    body = admin_portal.get("/o/acme/admin/sso/").content.decode()
    assert "https://haao.example.com/accounts/oidc/org-acme/login/callback/" in body
    assert "https://haao.example.com/accounts/saml/acme/acs/" in body
    assert "https://haao.example.com/accounts/saml/acme/metadata/" in body
    assert "Not configured" in body
    assert '<label for="id_oidc_issuer"' in body


def test_the_stored_client_secret_is_never_rendered(cast, admin_portal, oidc):
    body = admin_portal.get("/o/acme/admin/sso/").content.decode()
    assert SECRET not in body
    assert 'type="password" name="client_secret"' in body
    assert "A client secret is stored" in body
    assert 'value="https://idp.example.com"' in body  # the other settings are pre-filled
    # Not even when the form comes back with errors.
    response = admin_portal.post("/o/acme/admin/sso/",
                                 oidc_post(client_secret="typed-now", oidc_issuer="nope"))
    assert response.status_code == 400
    assert "typed-now" not in response.content.decode()
    assert SECRET not in response.content.decode()


def test_a_blank_secret_keeps_the_stored_one(cast, admin_portal, oidc):
    response = admin_portal.post("/o/acme/admin/sso/", oidc_post(oidc_client_id="haao-2"))
    assert response.status_code == 302
    connection = SSOConnection.objects.get(organization=cast.org)
    assert connection.oidc_client_id == "haao-2"
    assert connection.oidc_client_secret.reveal() == SECRET
    event = last_event(cast.org)
    assert event.type == "sso.updated" and "oidc_client_secret" not in event.data["changes"]


def test_a_new_secret_replaces_the_stored_one_and_the_audit_hides_it(cast, admin_portal, oidc):
    admin_portal.post("/o/acme/admin/sso/", oidc_post(client_secret="brand-new"))
    assert SSOConnection.objects.get(organization=cast.org).oidc_client_secret.reveal() \
        == "brand-new"
    event = last_event(cast.org)
    assert event.data["changes"]["oidc_client_secret"] == {"before": "********",
                                                          "after": "********"}
    assert "brand-new" not in str(event.data)


def test_a_first_oidc_setup_needs_a_secret(cast, admin_portal):
    response = admin_portal.post("/o/acme/admin/sso/", oidc_post())
    assert response.status_code == 400
    assert "Enter the client secret" in response.content.decode()
    assert not SSOConnection.objects.for_org(cast.org).exists()


def test_a_saml_connection_is_saved_with_a_valid_certificate(cast, admin_portal):
    pem = certificate_pem()
    response = admin_portal.post("/o/acme/admin/sso/", {
        "protocol": "saml", "enabled": "on", "email_domains": "Acme.test, @corp.acme.test",
        "default_role": "member", "saml_idp_entity_id": "https://idp.example.com/saml",
        "saml_sso_url": "https://idp.example.com/sso", "saml_x509_cert": pem})
    assert response.status_code == 302
    connection = SSOConnection.objects.get(organization=cast.org)
    assert connection.protocol == "saml"
    assert connection.email_domains == ["acme.test", "corp.acme.test"]
    assert x509.load_pem_x509_certificate(connection.saml_x509_cert.encode())


@pytest.mark.parametrize(("overrides", "message"), [
    ({"protocol": "saml", "saml_idp_entity_id": "x", "saml_sso_url": "https://i.test/sso",
      "saml_x509_cert": "-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----"},
     "not a valid X.509 certificate"),
    ({"email_domains": "acme.test, not a domain!"}, "is not a domain name"),
    ({"email_domains": "-bad-.test"}, "is not a domain name"),
    ({"oidc_client_id": "x" * 1_000_000}, "at most 255 characters"),
    ({"saml_x509_cert": "x" * 1_000_000}, "at most 16384 characters"),
    ({"oidc_client_id": "haao\x00evil"}, "Null characters are not allowed."),
    ({"client_secret": "abc\x00"}, "Null characters are not allowed."),
    ({"oidc_issuer": "javascript:alert(1)"}, "Enter a valid URL."),
    ({"protocol": "ldap"}, "Select a valid choice."),
    ({"default_role": "owner"}, "Select a valid choice."),
])
def test_bad_input_is_a_form_error_and_nothing_is_stored(cast, admin_portal, oidc, overrides,
                                                         message):
    before = row(cast.org)
    events = AuditEvent.objects.for_org(cast.org).count()
    response = admin_portal.post("/o/acme/admin/sso/", oidc_post(**overrides))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert row(cast.org) == before
    assert AuditEvent.objects.for_org(cast.org).count() == events


def test_a_domain_routed_to_another_organization_is_refused_on_its_field(cast, admin_portal):
    services.sso_connection_save(organization=cast.other_org, actor=cast.outsider,
                                 client_secret="x",
                                 fields={"protocol": "oidc", "oidc_issuer": "https://g.test",
                                         "oidc_client_id": "g", "email_domains": ["globex.test"]})
    response = admin_portal.post("/o/acme/admin/sso/",
                                 oidc_post(email_domains="globex.test", client_secret="y"))
    assert response.status_code == 409
    body = response.content.decode()
    assert "routed to another organization" in body and 'id="id_email_domains_error"' in body
    assert not SSOConnection.objects.for_org(cast.org).exists()


def test_requiring_sso_with_a_break_glass_admin_is_saved_and_audited(cast, admin_portal, oidc):
    verify_domain(cast.org, "acme.test", cast.admin)
    response = admin_portal.post("/o/acme/admin/sso/policy/",
                                 {"sso_required": "on", "break_glass_user": cast.admin.pk})
    assert response.status_code == 302
    org = Organization.objects.get(pk=cast.org.pk)
    assert org.sso_required and org.break_glass_user == cast.admin
    event = last_event(cast.org)
    assert event.type == "sso.policy_changed"


def test_requiring_sso_without_a_verified_domain_explains_what_is_missing(
    cast, admin_portal, oidc
):
    response = admin_portal.post("/o/acme/admin/sso/policy/", {"sso_required": "on"})
    assert response.status_code == 400
    assert "Verify an email domain before requiring SSO" in response.content.decode()
    assert not Organization.objects.get(pk=cast.org.pk).sso_required


def test_requiring_sso_without_a_provider_explains_what_is_missing(cast, admin_portal):
    response = admin_portal.post("/o/acme/admin/sso/policy/", {"sso_required": "on"})
    assert response.status_code == 400
    assert "Configure and enable an identity provider" in response.content.decode()
    assert not Organization.objects.get(pk=cast.org.pk).sso_required


def test_only_admins_can_be_the_break_glass_account(cast, admin_portal, oidc):
    outsider_admin = MembershipFactory(organization=cast.other_org, role="admin").user
    for user in (cast.member, outsider_admin):
        response = admin_portal.post("/o/acme/admin/sso/policy/",
                                     {"sso_required": "on", "break_glass_user": user.pk})
        assert response.status_code == 400
        assert "Select a valid choice" in response.content.decode()
    response = admin_portal.post("/o/acme/admin/sso/policy/",
                                 {"break_glass_user": "x" * 1_000_000})
    assert response.status_code == 400
    assert Organization.objects.get(pk=cast.org.pk).break_glass_user is None

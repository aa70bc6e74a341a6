"""Secrets at rest: encrypted in the database, never shown, re-encrypted under a new key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from accounts import services
from accounts.models import SSOConnection
from haao import crypto


def stored_ciphertext(pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT oidc_client_secret FROM accounts_ssoconnection WHERE id = %s",
                       [pk.hex if connection.vendor == "sqlite" else pk])
        return cursor.fetchone()[0]


def make_connection(cast) -> SSOConnection:
    return services.sso_connection_save(
        organization=cast.org, actor=cast.admin, client_secret="s3cr3t-value",
        fields={"protocol": "oidc", "oidc_issuer": "https://idp.example.com",
                "oidc_client_id": "haao"})


def test_secrets_are_encrypted_at_rest_and_hidden_in_reprs(cast) -> None:
    sso = make_connection(cast)
    raw = stored_ciphertext(sso.pk)
    assert raw.startswith("fernet:") and "s3cr3t" not in raw
    fresh = SSOConnection.objects.get(pk=sso.pk)
    assert fresh.oidc_client_secret.reveal() == "s3cr3t-value"
    assert "s3cr3t" not in repr(fresh.oidc_client_secret) + str(fresh.oidc_client_secret)


def test_the_audit_event_never_contains_the_secret(cast) -> None:
    from haao.models import AuditEvent

    make_connection(cast)
    event = AuditEvent.objects.for_org(cast.org).get(type="sso.created")
    assert "s3cr3t" not in str(event.data)
    assert event.data["changes"]["oidc_client_secret"]["after"] == "********"


def test_rotation_moves_every_secret_to_the_newest_key(cast, settings) -> None:
    sso = make_connection(cast)
    old_key = settings.ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key, old_key]
    call_command("reencrypt_secrets")
    settings.ENCRYPTION_KEYS = [new_key]  # the old key is gone now
    assert SSOConnection.objects.get(pk=sso.pk).oidc_client_secret.reveal() == "s3cr3t-value"
    token = stored_ciphertext(sso.pk)[len(crypto.PREFIX):]
    assert Fernet(new_key.encode()).decrypt(token.encode()) == b"s3cr3t-value"


def test_a_row_reads_without_its_key_and_its_secret_says_why_when_used(cast, settings) -> None:
    """A secret is decrypted when used, not whenever its row is read: rows with secrets are
    read on every step and page; with a lost key, pages that only list them still work."""
    sso = make_connection(cast)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key is lost
    fresh = SSOConnection.objects.get(pk=sso.pk)
    assert fresh.oidc_issuer == "https://idp.example.com"
    with pytest.raises(ImproperlyConfigured, match="reencrypt_secrets"):
        fresh.oidc_client_secret.reveal()
    settings.ENCRYPTION_KEYS = [new_key := Fernet.generate_key().decode()]
    fresh.oidc_client_secret = "another-value"
    fresh.save()
    token = stored_ciphertext(sso.pk)[len(crypto.PREFIX):]
    assert Fernet(new_key.encode()).decrypt(token.encode()) == b"another-value"

"""Password sign-in with django-allauth: email verification, TOTP and recovery codes,
and the failed-login rate limit on the configured (shared) cache."""

from __future__ import annotations

import re
import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
)
from django.core import mail
from django.core.cache import cache

from accounts.models import User
from tests.factories import PASSWORD, UserFactory


@pytest.fixture(autouse=True)
def fresh_cache(db) -> None:
    cache.clear()  # rate-limit counters and used TOTP codes live in the cache


def login(client, email: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": email, "password": password})


def current_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def test_signing_up_requires_verifying_the_email(client) -> None:
    response = client.post("/accounts/signup/", {
        "email": "newcomer@example.test", "password1": "a long new passphrase",
        "password2": "a long new passphrase"})
    assert response.status_code == 302 and "confirm-email" in response["Location"]
    assert "_auth_user_id" not in client.session
    assert len(mail.outbox) == 1
    link = re.search(r"http://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body)
    assert link is not None
    path = link.group(0).split("://", 1)[1].split("/", 1)[1]
    client.post("/" + path)
    assert client.session["_auth_user_id"] == str(User.objects.get(
        email="newcomer@example.test").pk)


def test_an_unverified_account_cannot_sign_in(client) -> None:
    user = User.objects.create_user("unverified@example.test", PASSWORD)
    response = login(client, user.email)
    assert "_auth_user_id" not in client.session
    assert response.status_code == 302 and "confirm-email" in response["Location"]


def test_totp_is_asked_after_the_password_and_a_wrong_code_is_refused(client) -> None:
    user = UserFactory()
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    response = login(client, user.email)
    assert response.status_code == 302 and response["Location"].startswith(
        "/accounts/2fa/authenticate/")
    assert "_auth_user_id" not in client.session
    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert wrong.status_code == 200 and "Incorrect code" in wrong.content.decode()
    assert "_auth_user_id" not in client.session
    client.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_recovery_code_signs_in_once(client) -> None:
    user = UserFactory()
    TOTP.activate(user, generate_totp_secret())
    codes = RecoveryCodes.activate(user).generate_codes()
    login(client, user.email)
    client.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert client.session["_auth_user_id"] == str(user.pk)
    client.post("/accounts/logout/")
    login(client, user.email)
    client.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert "_auth_user_id" not in client.session


def test_a_user_activates_totp_from_the_portal(client) -> None:
    user = UserFactory()
    client.force_login(user)
    asked = client.get("/accounts/2fa/totp/activate/")
    assert asked["Location"].startswith("/accounts/reauthenticate/")  # password first
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = client.session["mfa.totp.secret"]
    client.post("/accounts/2fa/totp/activate/", {"code": current_code(secret)})
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def test_repeated_failed_logins_are_rate_limited_even_with_the_right_password(client) -> None:
    user = UserFactory()
    for _ in range(5):
        response = login(client, user.email, "wrong password")
        assert response.status_code == 200
    limited = login(client, user.email)
    assert "Too many failed login attempts" in limited.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_failed_login_limit_is_per_account_not_global(client) -> None:
    victim, other = UserFactory(), UserFactory()
    for _ in range(5):
        login(client, victim.email, "wrong password")
    login(client, other.email)
    assert client.session["_auth_user_id"] == str(other.pk)


def test_failing_on_purpose_from_another_address_does_not_lock_the_owner_out() -> None:
    from django.test import Client

    victim = UserFactory()
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(6):
        login(attacker, victim.email, "wrong password")
    assert "Too many failed login attempts" in login(attacker, victim.email).content.decode()
    owner = Client(REMOTE_ADDR="198.51.100.7")
    login(owner, victim.email)
    assert owner.session["_auth_user_id"] == str(victim.pk)


@pytest.mark.parametrize("host", ["evil.example", "localhost:9999"])
def test_mailed_links_use_the_base_url_not_the_request_host(client, settings, host) -> None:
    settings.ALLOWED_HOSTS = ["*"]
    settings.BASE_URL = "https://haao.example.test"
    user = UserFactory()
    client.post("/accounts/password/reset/", {"email": user.email}, HTTP_HOST=host)
    client.post("/accounts/signup/", {
        "email": "newcomer@example.test", "password1": "a long new passphrase",
        "password2": "a long new passphrase"}, HTTP_HOST=host)
    assert len(mail.outbox) == 2
    for message in mail.outbox:
        links = re.findall(r"https?://[^\s/]+/accounts/\S+", message.body)
        assert links, message.body
        assert all(link.startswith("https://haao.example.test/accounts/") for link in links)

"""allauth adapters: HAAO's rules for password and SSO sign-in.

SSO apps come from `SSOConnection` rows (accounts/sso/providers.py), never from allauth's
SocialApp table. An organization's identity provider may sign in only its own members or
people it brings in just in time, and only at the email domains the organization verified;
it can never reach an account that belongs elsewhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.internal.stagekit import clear_login
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp, SocialLogin
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from accounts.assurance import session_record_sso
from accounts.models import User
from accounts.services import membership_create_from_sso
from accounts.sso import selectors, services
from accounts.sso.providers import Origin, origin_of_app, social_apps
from haao.ssrf import pinned_session


def _origin(request: HttpRequest, sociallogin: SocialLogin) -> Origin | None:
    try:
        provider = sociallogin.account.get_provider(request)
    except SocialApp.DoesNotExist:
        return None
    return origin_of_app(getattr(provider, "app", None))


def _refuse(request: HttpRequest, origin: Origin | None, *, email: str, reason: str,
            message: str) -> ImmediateHttpResponse:
    if origin is not None:
        services.sso_login_refusal_record(organization=origin.organization, email=email,
                                          protocol=origin.protocol, reason=reason)
    response = render(request, "sso/refused.html",
                      {"message": message, "organization": origin.organization if origin else None},
                      status=403)
    return ImmediateHttpResponse(response)


def absolute_url(path: str) -> str:
    """`path` on HAAO_BASE_URL: links sent by mail never take their host from a request."""
    return settings.BASE_URL + path


class AccountAdapter(DefaultAccountAdapter):
    def get_reset_password_from_key_url(self, key: str) -> str:
        path = reverse("account_reset_password_from_key",
                       kwargs={"uidb36": "UID", "key": "KEY"})
        return absolute_url(path.replace("UID-KEY", quote(key)))

    def get_email_confirmation_url(self, request: HttpRequest | None,
                                   emailconfirmation: Any) -> str:
        return absolute_url(reverse("account_confirm_email", args=[emailconfirmation.key]))

    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials: Any) -> str:
        # allauth counts failed logins per account; counted per (client address, account)
        # instead, nobody can lock someone else out by failing on purpose from elsewhere
        # (the per-address limit of ACCOUNT_RATE_LIMITS still holds each address back).
        account_key = super()._get_login_attempts_cache_key(request, **credentials)
        return f"{self.get_client_ip(request)}:{account_key}"

    def pre_login(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any
                  ) -> HttpResponse | None:
        """Refuse any sign-in but SSO to members of an organization that requires SSO.

        Runs before allauth's login stages, so a password never reaches the MFA step either.
        """
        response: HttpResponse | None = super().pre_login(request, user, **kwargs)
        if response is not None:
            return response
        if (kwargs.get("signal_kwargs") or {}).get("sociallogin") is not None:
            return None
        assert isinstance(user, User)
        orgs = selectors.organizations_requiring_sso(user=user)
        if not orgs:
            return None
        clear_login(request)
        return render(request, "sso/password_refused.html",
                      {"organizations": orgs, "sso_url": reverse("sso-start")}, status=403)

    def post_login(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any
                   ) -> HttpResponse:
        sociallogin = (kwargs.get("signal_kwargs") or {}).get("sociallogin")
        origin = _origin(request, sociallogin) if sociallogin is not None else None
        if origin is not None:
            assert isinstance(user, User)
            services.sso_login_record(organization=origin.organization, user=user,
                                      protocol=origin.protocol)
            session_record_sso(session=request.session, user=user,
                               organization=origin.organization)
            if not kwargs.get("redirect_url"):
                kwargs["redirect_url"] = reverse("org-overview",
                                                 kwargs={"org": origin.organization.slug})
        response: HttpResponse = super().post_login(request, user, **kwargs)
        return response


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def get_requests_session(self) -> Any:
        """Every call to an identity provider (discovery, token, userinfo, keys) goes through
        the SSRF guard, to the address it checked, redirects included."""
        from allauth.socialaccount import app_settings

        return pinned_session(timeout=app_settings.REQUESTS_TIMEOUT)

    def list_apps(self, request: HttpRequest, provider: str | None = None,
                  client_id: str | None = None) -> list[SocialApp]:
        """Apps built from enabled SSO connections; allauth's SocialApp table is not used."""
        return social_apps(provider=provider, client_id=client_id)

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        """Just-in-time accounts only through an organization's own identity provider."""
        return _origin(request, sociallogin) is not None

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        """Decide whom this organization's identity provider may sign in.

        The IdP speaks only for the email domains its organization verified, for new and
        existing accounts alike: any other answer would let one tenant's IdP take over an
        account another tenant governs.
        """
        origin = _origin(request, sociallogin)
        email = (sociallogin.user.email or "").strip().lower()
        if origin is None:
            raise _refuse(request, None, email=email, reason="unknown provider",
                          message="This identity provider is not enabled any more.")
        org = origin.organization
        if not selectors.verified_domains(organization=org):
            raise _refuse(request, origin, email=email, reason="no verified domain",
                          message=f"{org.name} has not verified any email domain, so its "
                                  "identity provider cannot sign anyone in yet. An admin of "
                                  f"{org.name} must add the organization's email domain under "
                                  "Administration → Single sign-on → Email domains and verify "
                                  "it with a DNS TXT record.")
        if sociallogin.is_existing:
            user = sociallogin.user
            if not selectors.is_member(user=user, organization=org):
                raise _refuse(request, origin, email=user.email, reason="not a member",
                              message=f"Your account is not a member of {org.name} any more. "
                                      "Ask an admin of the organization to invite you again.")
            self._require_verified_domain(request, origin, email=user.email)
            return
        if not email:
            raise _refuse(request, origin, email="", reason="no email",
                          message=f"{org.name}'s identity provider did not send an email "
                                  "address, so we cannot sign you in. Ask its admin to "
                                  "release the email claim to HAAO.")
        existing = User.objects.filter(email__iexact=email).first()
        if existing is not None:
            if not selectors.is_member(user=existing, organization=org):
                # Never let one organization's IdP into an account it does not govern.
                raise _refuse(request, origin, email=email, reason="account of another",
                              message=f"The account {email} is not a member of {org.name}, so "
                                      f"{org.name}'s identity provider cannot sign it in. Sign "
                                      "in the way you usually do, or ask an admin of "
                                      f"{org.name} to invite {email}.")
            self._require_verified_domain(request, origin, email=existing.email)
            sociallogin.connect(request, existing)
            return
        self._require_verified_domain(request, origin, email=email)

    def _require_verified_domain(self, request: HttpRequest, origin: Origin, *,
                                 email: str) -> None:
        org = origin.organization
        if selectors.idp_may_speak_for(organization=org, email=email):
            return
        domain = email.rpartition("@")[2] or "this address"
        raise _refuse(request, origin, email=email, reason="email domain not verified",
                      message=f"{org.name}'s identity provider may sign in only addresses at "
                              f"the email domains {org.name} has verified, and {domain} is "
                              "not one of them. Sign in the way you usually do; if the "
                              f"domain belongs to {org.name}, an admin must verify it under "
                              "Administration → Single sign-on → Email domains.")

    def populate_user(self, request: HttpRequest, sociallogin: SocialLogin,
                      data: dict[str, Any]) -> User:
        user: User = super().populate_user(request, sociallogin, data)
        user.email = (user.email or "").strip().lower()
        full = " ".join(p for p in (data.get("first_name"), data.get("last_name")) if p)
        user.name = (data.get("name") or full or "")[:150]
        return user

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin,
                  form: Form | None = None) -> User:
        """A just-in-time user and their membership with the connection's default role."""
        origin = _origin(request, sociallogin)
        if origin is None:
            raise _refuse(request, None, email=sociallogin.user.email or "",
                          reason="unknown provider",
                          message="This identity provider is not enabled any more.")
        with transaction.atomic():
            user: User = super().save_user(request, sociallogin, form)
            membership_create_from_sso(organization=origin.organization, user=user,
                                       role=origin.connection.default_role,
                                       provider=origin.protocol)
        return user

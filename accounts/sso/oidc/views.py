"""Login and callback views of organization OpenID providers, with full ID token checks.

allauth skips the ID token signature check when it fetched the token itself and sends no
nonce; HAAO verifies the signature against the provider's JWKS, the issuer, the audience,
the expiry and a single-use nonce bound to the login state.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import jwt
from allauth.socialaccount.internal import jwtkit
from allauth.socialaccount.models import SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse

# Asymmetric algorithms only: a symmetric one would let the client secret forge tokens.
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                "ES256", "ES384", "ES512", "EdDSA"})
CLOCK_SKEW_SECONDS = 60
NONCE_TTL_SECONDS = 3600


def _same_issuer(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class OrgOIDCAdapter(OpenIDConnectOAuth2Adapter):
    """Verifies every ID token, whoever fetched it."""

    login_state: dict[str, Any] | None = None

    def complete_login(
        self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any
    ) -> SocialLogin:
        id_token = kwargs["response"].get("id_token")
        if not id_token:
            raise OAuth2Error("The identity provider sent no ID token.")
        claims = self._decode_id_token(app, id_token)
        data: dict[str, Any] = {"id_token": claims}
        if app.settings.get("fetch_userinfo", True):
            userinfo = self._fetch_user_info(token.token)
            if str(userinfo.get("sub")) != str(claims["sub"]):
                raise OAuth2Error("The userinfo subject differs from the ID token's.")
            data["userinfo"] = userinfo
        login: SocialLogin = self.get_provider().sociallogin_from_response(request, data)
        return login

    def _decode_id_token(self, app: SocialApp, id_token: str) -> dict[str, Any]:
        config = self.openid_config
        issuer = config.get("issuer", "")
        if not _same_issuer(issuer, app.settings["server_url"]):
            raise OAuth2Error("The discovery document names another issuer.")
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise OAuth2Error("The ID token is malformed.") from exc
        alg = header.get("alg")
        advertised = set(config.get("id_token_signing_alg_values_supported") or ["RS256"])
        if alg not in ALLOWED_ALGORITHMS or alg not in advertised:
            raise OAuth2Error(f"The ID token is signed with an unaccepted algorithm ({alg}).")
        try:
            _, key = jwtkit.fetch_key(id_token, config["jwks_uri"], jwtkit.lookup_kid_jwk)
            claims: dict[str, Any] = jwt.decode(
                id_token, key=key, algorithms=[alg], audience=app.client_id, issuer=issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "nonce"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            raise OAuth2Error(f"The ID token is not valid: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != app.client_id:
            raise OAuth2Error("The ID token was issued to another party.")
        self._check_nonce(str(claims["nonce"]))
        return claims

    def _check_nonce(self, nonce: str) -> None:
        expected = (self.login_state or {}).get("nonce")
        if not expected or not hmac.compare_digest(nonce, str(expected)):
            raise OAuth2Error("The ID token's nonce does not belong to this login.")
        # The state is single use already; the cache also stops a nonce used in another session.
        key = "oidc-nonce:" + hashlib.sha256(nonce.encode()).hexdigest()
        if not cache.add(key, int(time.time()), timeout=NONCE_TTL_SECONDS):
            raise OAuth2Error("The ID token's nonce was used before.")


class OrgOIDCCallbackView(OAuth2CallbackView):
    """allauth's callback; hands the popped login state to the adapter for the nonce check."""

    adapter: OrgOIDCAdapter

    def _get_state(self, request: HttpRequest, provider: Any) -> tuple[Any, Any]:
        state, response = super()._get_state(request, provider)
        self.adapter.login_state = state
        return state, response


def login(request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        view = OAuth2LoginView.adapter_view(OrgOIDCAdapter(request, provider_id))
        response: HttpResponse = view(request)
    except SocialApp.DoesNotExist:
        raise Http404("No such identity provider.") from None
    return response


def callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        view = OrgOIDCCallbackView.adapter_view(OrgOIDCAdapter(request, provider_id))
        response: HttpResponse = view(request)
    except SocialApp.DoesNotExist:
        raise Http404("No such identity provider.") from None
    return response

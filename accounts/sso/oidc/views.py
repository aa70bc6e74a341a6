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
import requests
from allauth.socialaccount.adapter import get_adapter
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
DISCOVERY_TTL_SECONDS = 300
DISCOVERY_MAX_BYTES = 256 * 1024
# What a sign-in needs from the discovery document.
DISCOVERY_URLS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


def _fetch_discovery(server_url: str) -> dict[str, Any]:
    try:
        with get_adapter().get_requests_session() as session:
            response = session.get(server_url, allow_redirects=False)
    except requests.RequestException as error:
        raise OAuth2Error(f"The identity provider could not be reached: {error}") from None
    if response.status_code != 200:
        raise OAuth2Error("The identity provider's discovery document answered HTTP "
                          f"{response.status_code}.")
    if len(response.content) > DISCOVERY_MAX_BYTES:
        raise OAuth2Error("The identity provider's discovery document is too large.")
    try:
        config = response.json()
    except ValueError:
        raise OAuth2Error("The identity provider's discovery document is not JSON.") from None
    if not isinstance(config, dict) or not all(
            isinstance(config.get(name), str) for name in DISCOVERY_URLS):
        raise OAuth2Error("The identity provider's discovery document lacks "
                          + ", ".join(DISCOVERY_URLS) + ".")
    return config


def _same_issuer(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class OrgOIDCAdapter(OpenIDConnectOAuth2Adapter):
    """Verifies every ID token, whoever fetched it."""

    login_state: dict[str, Any] | None = None

    @property
    def openid_config(self) -> dict[str, Any]:
        """The provider's discovery document, fetched through the SSRF guard and kept a few
        minutes (an anonymous sign-in start must not make HAAO fetch it each time); what is
        not a JSON object is refused with the reason, never a server error."""
        if not hasattr(self, "_openid_config"):
            server_url = self.get_provider().server_url
            key = "oidc-discovery:" + hashlib.sha256(server_url.encode()).hexdigest()
            config = cache.get(key)
            if config is None:
                config = _fetch_discovery(server_url)
                cache.set(key, config, DISCOVERY_TTL_SECONDS)
            self._openid_config = config
        return dict(self._openid_config)

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

"""allauth's OpenID Connect provider that always sends a nonce and uses PKCE."""

from __future__ import annotations

import secrets
from typing import Any

from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from django.http import HttpRequest, HttpResponse

from accounts.sso.oidc.views import OrgOIDCAdapter


class OrgOpenIDConnectProvider(OpenIDConnectProvider):
    """One organization's OpenID provider; the nonce is bound to the login's state."""

    oauth2_adapter_class = OrgOIDCAdapter
    package = "accounts.sso.oidc"  # allauth loads the provider's URLs from <package>.urls
    pkce_enabled_default = True

    def redirect(
        self, request: HttpRequest, process: Any, next_url: str | None = None,
        data: Any = None, **kwargs: Any,
    ) -> HttpResponse:
        nonce = secrets.token_urlsafe(32)
        auth_params = kwargs.pop("auth_params", None)
        if auth_params is None:
            auth_params = self.get_auth_params()
        auth_params["nonce"] = nonce
        # Extra keyword arguments end up in the stashed state, which the callback pops once.
        response: HttpResponse = super().redirect(
            request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kwargs
        )
        return response


provider_classes = [OrgOpenIDConnectProvider]

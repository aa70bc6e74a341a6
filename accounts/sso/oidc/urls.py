"""Routes of organization OpenID providers, under allauth's names and prefix."""

from __future__ import annotations

from allauth.socialaccount import app_settings
from django.urls import include, path

from accounts.sso.oidc import views

prefix = app_settings.OPENID_CONNECT_URL_PREFIX or "oidc"

urlpatterns = [
    path(f"{prefix}/<str:provider_id>/", include([
        path("login/", views.login, name="openid_connect_login"),
        path("login/callback/", views.callback, name="openid_connect_callback"),
    ])),
]

"""allauth apps built from `SSOConnection` rows, so client secrets never sit in SocialApp."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allauth.socialaccount.models import SocialApp
from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse

from accounts.models import Organization, SSOConnection, SSOProtocol

OIDC_PROVIDER = "openid_connect"
SAML_PROVIDER = "saml"
OIDC_PREFIX = "org-"
SAML_PREFIX = "saml-"


def oidc_provider_id(slug: str) -> str:
    return f"{OIDC_PREFIX}{slug}"


def saml_provider_id(slug: str) -> str:
    # Its own prefix: an OIDC id "org-<a>" can never equal a SAML id "saml-<b>".
    return f"{SAML_PREFIX}{slug}"


def saml_sp_entity_id(slug: str) -> str:
    """The SP entity id (the audience IdPs must address) of one organization."""
    return settings.BASE_URL + reverse("saml_metadata", kwargs={"organization_slug": slug})


def _oidc_app(connection: SSOConnection, org: Organization) -> SocialApp:
    secret = connection.oidc_client_secret
    return SocialApp(
        provider=OIDC_PROVIDER,
        provider_id=oidc_provider_id(org.slug),
        name=org.name,
        client_id=connection.oidc_client_id,
        secret=secret.reveal() if secret else "",
        settings={
            "server_url": connection.oidc_issuer,
            "oauth_pkce_enabled": True,
            "fetch_userinfo": True,
            "hidden": True,  # never listed on shared pages: that would reveal the tenants
            "haao_organization": org.slug,
            "haao_protocol": SSOProtocol.OIDC.value,
        },
    )


def _saml_app(connection: SSOConnection, org: Organization) -> SocialApp:
    return SocialApp(
        provider=SAML_PROVIDER,
        provider_id=saml_provider_id(org.slug),
        name=org.name,
        client_id=org.slug,  # allauth's SAML URLs are /accounts/saml/<client_id>/…
        settings={
            "idp": {
                "entity_id": connection.saml_idp_entity_id,
                "sso_url": connection.saml_sso_url,
                "x509cert": connection.saml_x509_cert,
            },
            "sp": {"entity_id": saml_sp_entity_id(org.slug)},
            "advanced": {
                "strict": True,  # audience, destination, validity window, recipient
                "want_assertion_signed": True,
                "want_name_id": True,
                "want_attribute_statement": False,
                "reject_idp_initiated_sso": True,
                "reject_deprecated_algorithm": True,
                # Only our own ACS/SLS URLs are checked against this: allow "localhost".
                "allow_single_label_domains": True,
            },
            # The organization's own IdP vouches for the address it asserts.
            "verified_email": True,
            "hidden": True,
            "haao_organization": org.slug,
            "haao_protocol": SSOProtocol.SAML.value,
        },
    )


def _enabled_connections() -> QuerySet[SSOConnection]:
    return SSOConnection.objects.filter(enabled=True).select_related("organization")


def build_app(connection: SSOConnection) -> SocialApp | None:
    """The allauth app of one connection, or None while it is incomplete."""
    org = connection.organization
    if connection.protocol == SSOProtocol.OIDC:
        if not (connection.oidc_issuer and connection.oidc_client_id):
            return None
        return _oidc_app(connection, org)
    if connection.protocol == SSOProtocol.SAML:
        if not (connection.saml_idp_entity_id and connection.saml_sso_url
                and connection.saml_x509_cert):
            return None
        return _saml_app(connection, org)
    return None


def social_apps(*, provider: str | None = None, client_id: str | None = None) -> list[SocialApp]:
    """Apps of enabled connections matching allauth's `list_apps` criteria.

    `provider` is a provider class id ("openid_connect", "saml") or an app's provider_id.
    """
    connections = _enabled_connections()
    if provider and provider.startswith(OIDC_PREFIX):
        connections = connections.filter(protocol=SSOProtocol.OIDC,
                                          organization__slug=provider[len(OIDC_PREFIX):])
    elif provider and provider.startswith(SAML_PREFIX):
        connections = connections.filter(protocol=SSOProtocol.SAML,
                                          organization__slug=provider[len(SAML_PREFIX):])
    elif provider == OIDC_PROVIDER:
        connections = connections.filter(protocol=SSOProtocol.OIDC)
    elif provider == SAML_PROVIDER:
        connections = connections.filter(protocol=SSOProtocol.SAML)
    elif provider:
        return []
    apps = [app for app in map(build_app, connections) if app is not None]
    if client_id is not None:
        apps = [app for app in apps if app.client_id == client_id]
    return apps


@dataclass(frozen=True)
class Origin:
    """The organization (and its identity provider) a social login came through."""

    organization: Organization
    connection: SSOConnection

    @property
    def protocol(self) -> str:
        return self.connection.protocol


def origin_of_app(app: SocialApp | None) -> Origin | None:
    """The organization behind an app this module built, if its connection is still enabled."""
    app_settings: dict[str, Any] = getattr(app, "settings", None) or {}
    slug = app_settings.get("haao_organization")
    protocol = app_settings.get("haao_protocol")
    if not slug or not protocol:
        return None
    connection = (_enabled_connections()
                  .filter(organization__slug=slug, protocol=protocol).first())
    if connection is None:
        return None
    return Origin(organization=connection.organization, connection=connection)

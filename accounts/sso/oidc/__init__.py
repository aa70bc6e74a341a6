"""OpenID Connect for organizations: allauth's provider with HAAO's stricter ID token checks.

Registered in place of allauth's class through
`SOCIALACCOUNT_PROVIDERS["openid_connect"]["provider_class"]`, so the provider id stays
"openid_connect" and these URLs replace allauth's.
"""

"""Organization admin console routes (members, invitations, SSO, domains, tokens, audit log)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from accounts.views import console

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/members/", console.MembersView.as_view(), name="console-members"),
    path("admin/members/<uuid:membership_id>/", console.MemberDetailView.as_view(),
         name="console-member"),
    path("admin/members/<uuid:membership_id>/role/", console.MemberRoleView.as_view(),
         name="console-member-role"),
    path("admin/members/<uuid:membership_id>/remove/", console.MemberRemoveView.as_view(),
         name="console-member-remove"),
    path("admin/invitations/", console.InvitationsView.as_view(), name="console-invitations"),
    path("admin/invitations/<uuid:invitation_id>/revoke/",
         console.InvitationRevokeView.as_view(), name="console-invitation-revoke"),
    path("admin/sso/", console.SSOView.as_view(), name="console-sso"),
    path("admin/sso/domains/", console.DomainsView.as_view(), name="console-domains"),
    path("admin/sso/domains/<uuid:domain_id>/verify/", console.DomainVerifyView.as_view(),
         name="console-domain-verify"),
    path("admin/sso/domains/<uuid:domain_id>/remove/", console.DomainRemoveView.as_view(),
         name="console-domain-remove"),
    path("admin/sso/policy/", console.SSOPolicyView.as_view(), name="console-sso-policy"),
    path("admin/sso/unsandboxed-checks/", console.UnsandboxedChecksView.as_view(),
         name="console-unsandboxed-checks"),
    path("tokens/", console.TokensView.as_view(), name="console-tokens"),
    path("tokens/<uuid:token_id>/revoke/", console.TokenRevokeView.as_view(),
         name="console-token-revoke"),
    path("admin/audit/", console.AuditLogView.as_view(), name="console-audit"),
    path("admin/audit.csv", console.AuditCSVView.as_view(), name="console-audit-csv"),
]

"""The organization admin console: members, invitations, SSO and domains, API tokens, audit log.

Each POST handler validates a form from accounts/forms.py and calls one service; domain
errors (ApplicationError) become form errors or messages, never a 500.
"""

from __future__ import annotations

from accounts.views.console.audit import AuditCSVView, AuditLogView, summarize
from accounts.views.console.domains import DomainRemoveView, DomainsView, DomainVerifyView
from accounts.views.console.invitations import (
    InvitationRevokeView,
    InvitationsView,
    invitation_link,
)
from accounts.views.console.members import (
    MemberDetailView,
    MemberRemoveView,
    MemberRoleView,
    MembersView,
)
from accounts.views.console.sso import SSOPolicyView, SSOView, UnsandboxedChecksView
from accounts.views.console.tokens import TokenRevokeView, TokensView

__all__ = [
    "AuditCSVView",
    "AuditLogView",
    "DomainRemoveView",
    "DomainVerifyView",
    "DomainsView",
    "InvitationRevokeView",
    "InvitationsView",
    "MemberDetailView",
    "MemberRemoveView",
    "MemberRoleView",
    "MembersView",
    "SSOPolicyView",
    "SSOView",
    "TokenRevokeView",
    "TokensView",
    "UnsandboxedChecksView",
    "invitation_link",
    "summarize",
]

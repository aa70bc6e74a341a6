"""REST API routes of organizations, members, invitations, tokens and the audit log."""

from __future__ import annotations

from django.urls import path

from accounts.api import views

org = "orgs/<slug:org>/"

urlpatterns = [
    path("orgs/", views.OrganizationListView.as_view(), name="api-organizations"),
    path(org, views.OrganizationDetailView.as_view(), name="api-organization"),
    path(f"{org}members/", views.MemberListView.as_view(), name="api-members"),
    path(f"{org}members/<uuid:membership>/", views.MemberDetailView.as_view(),
         name="api-member"),
    path(f"{org}invitations/", views.InvitationListView.as_view(), name="api-invitations"),
    path(f"{org}invitations/<uuid:invitation>/", views.InvitationDetailView.as_view(),
         name="api-invitation"),
    path(f"{org}tokens/", views.ApiTokenListView.as_view(), name="api-tokens"),
    path(f"{org}tokens/<uuid:token>/", views.ApiTokenDetailView.as_view(), name="api-token"),
    path(f"{org}audit-events/", views.AuditEventListView.as_view(), name="api-audit-events"),
]

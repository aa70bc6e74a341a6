"""Portal routes: the organization picker, invitations and every `/o/<org>/…` page."""

from __future__ import annotations

from django.urls import include, path

from accounts.views import portal

urlpatterns = [
    path("", portal.HomeView.as_view(), name="home"),
    path("invitations/<str:token>/", portal.InvitationView.as_view(), name="invitation"),
    path("o/<slug:org>/", portal.OrgOverviewView.as_view(), name="org-overview"),
    path("o/<slug:org>/", include("accounts.urls_console")),
    path("o/<slug:org>/", include("agents.urls_console")),
    path("o/<slug:org>/", include("agents.urls_reports")),
    path("o/<slug:org>/", include("policies.urls_console")),
    path("o/<slug:org>/", include("tickets.urls_portal")),
    path("o/<slug:org>/", include("tickets.urls_gates")),
    path("o/<slug:org>/", include("agents.delivery.urls")),
]

"""REST API routes of projects, requirements, tickets and their events, included under
/api/v1/; plus the public Atomic Ticket schema."""

from __future__ import annotations

from django.urls import path

from tickets import api

org = "orgs/<slug:org>/"
requirement = f"{org}requirements/<str:key>/"
ticket = f"{org}tickets/<str:key>/"

urlpatterns = [
    path("schemas/atomic-ticket/v1.json", api.atomic_ticket_schema,
         name="api-schema-atomic-ticket-v1"),
    path(f"{org}projects/", api.ProjectListView.as_view(), name="api-projects"),
    path(f"{org}projects/<str:key>/", api.ProjectDetailView.as_view(), name="api-project"),
    path(f"{org}projects/<str:key>/deploy-key/", api.ProjectDeployKeyView.as_view(),
         name="api-project-deploy-key"),
    path(f"{org}projects/<str:key>/connection-test/", api.ProjectConnectionTestView.as_view(),
         name="api-project-connection-test"),
    path(f"{org}projects/<str:key>/setup-check/", api.ProjectSetupCheckView.as_view(),
         name="api-project-setup-check"),
    path(f"{org}projects/<str:key>/grants/<uuid:membership>/", api.ProjectGrantsView.as_view(),
         name="api-project-grants"),
    path(f"{org}projects/<str:key>/requirements/", api.RequirementListView.as_view(),
         name="api-requirements"),
    path(f"{org}projects/<str:key>/events/", api.ProjectEventsView.as_view(),
         name="api-project-events"),
    path(requirement, api.RequirementDetailView.as_view(), name="api-requirement"),
    path(f"{requirement}approve/", api.RequirementApproveView.as_view(),
         name="api-requirement-approve"),
    path(f"{requirement}reorder/", api.RequirementReorderView.as_view(),
         name="api-requirement-reorder"),
    path(f"{requirement}tickets/", api.RequirementTicketsView.as_view(),
         name="api-requirement-tickets"),
    path(f"{org}tickets/", api.TicketListView.as_view(), name="api-tickets"),
    path(ticket, api.TicketDetailView.as_view(), name="api-ticket"),
    path(f"{ticket}approve/", api.TicketApproveView.as_view(), name="api-ticket-approve"),
    path(f"{ticket}accept/", api.TicketAcceptView.as_view(), name="api-ticket-accept"),
    path(f"{ticket}reject/", api.TicketRejectView.as_view(), name="api-ticket-reject"),
    path(f"{ticket}cancel/", api.TicketCancelView.as_view(), name="api-ticket-cancel"),
    path(f"{ticket}retry/", api.TicketRetryView.as_view(), name="api-ticket-retry"),
    path(f"{ticket}events/", api.TicketEventsView.as_view(), name="api-ticket-events"),
]

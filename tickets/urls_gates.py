"""Portal routes of the two gates, included under /o/<org>/: requirements and tickets."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from tickets.portal import gates

requirement = "requirements/<str:key>/"
proposed = f"{requirement}tickets/<str:ticket_key>/"
ticket = "tickets/<str:key>/"

urlpatterns: list[URLPattern | URLResolver] = [
    path(requirement, gates.RequirementView.as_view(), name="portal-requirement"),
    path(f"{requirement}add/", gates.RequirementAddView.as_view(),
         name="portal-requirement-add"),
    path(f"{requirement}approve/", gates.RequirementApproveView.as_view(),
         name="portal-requirement-approve"),
    path(f"{proposed}spec/", gates.RequirementSpecView.as_view(),
         name="portal-requirement-spec"),
    path(f"{proposed}fields/", gates.RequirementFieldsView.as_view(),
         name="portal-requirement-fields"),
    path(f"{proposed}drop/", gates.RequirementDropView.as_view(),
         name="portal-requirement-drop"),
    path(f"{proposed}move/", gates.RequirementMoveView.as_view(),
         name="portal-requirement-move"),
    path(ticket, gates.TicketView.as_view(), name="portal-ticket"),
    path(f"{ticket}accept/", gates.TicketAcceptView.as_view(), name="portal-ticket-accept"),
    path(f"{ticket}reject/", gates.TicketRejectView.as_view(), name="portal-ticket-reject"),
    path(f"{ticket}retry/", gates.TicketRetryView.as_view(), name="portal-ticket-retry"),
    path(f"{ticket}cancel/", gates.TicketCancelView.as_view(), name="portal-ticket-cancel"),
]

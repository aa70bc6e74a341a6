"""The tickets domain's REST API: projects, requirements, tickets, their events, and the
public Atomic Ticket schema; tickets/urls.py routes them."""

from __future__ import annotations

from tickets.api.events import ProjectEventsView, TicketEventsView
from tickets.api.projects import (
    ProjectConnectionTestView,
    ProjectCreateSerializer,
    ProjectDeployKeyView,
    ProjectDetailView,
    ProjectGrantsSerializer,
    ProjectGrantsView,
    ProjectListView,
    ProjectSettingsSerializer,
    ProjectSetupCheckView,
)
from tickets.api.requirements import (
    ReorderSerializer,
    RequirementApproveView,
    RequirementCreateSerializer,
    RequirementDetailView,
    RequirementListView,
    RequirementReorderView,
    RequirementTicketsView,
)
from tickets.api.schema import atomic_ticket_schema
from tickets.api.tickets import (
    CancelSerializer,
    RejectSerializer,
    SpecUpdateSerializer,
    TicketAcceptView,
    TicketApproveView,
    TicketCancelView,
    TicketDetailView,
    TicketListView,
    TicketRejectView,
    TicketRetryView,
)

__all__ = [
    "CancelSerializer",
    "ProjectConnectionTestView",
    "ProjectCreateSerializer",
    "ProjectDeployKeyView",
    "ProjectDetailView",
    "ProjectEventsView",
    "ProjectGrantsSerializer",
    "ProjectGrantsView",
    "ProjectListView",
    "ProjectSettingsSerializer",
    "ProjectSetupCheckView",
    "RejectSerializer",
    "ReorderSerializer",
    "RequirementApproveView",
    "RequirementCreateSerializer",
    "RequirementDetailView",
    "RequirementListView",
    "RequirementReorderView",
    "RequirementTicketsView",
    "SpecUpdateSerializer",
    "TicketAcceptView",
    "TicketApproveView",
    "TicketCancelView",
    "TicketDetailView",
    "TicketEventsView",
    "TicketListView",
    "TicketRejectView",
    "TicketRetryView",
    "atomic_ticket_schema",
]

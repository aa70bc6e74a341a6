"""Writes of the tickets domain; each submodule holds one entity's services."""

from __future__ import annotations

from tickets.services.attempts import CheckOutcome, attempt_finish, attempt_start
from tickets.services.projects import GRANTS, project_create, project_grant_set
from tickets.services.requirements import (
    requirement_approve,
    requirement_create,
    requirement_fail,
    requirement_from_issue,
    requirement_propose,
)
from tickets.services.tickets import (
    ticket_accept,
    ticket_add,
    ticket_approve,
    ticket_cancel,
    ticket_reject,
    ticket_retry,
    ticket_spec_update,
    tickets_reorder,
)

__all__ = [
    "GRANTS",
    "CheckOutcome",
    "attempt_finish",
    "attempt_start",
    "project_create",
    "project_grant_set",
    "requirement_approve",
    "requirement_create",
    "requirement_fail",
    "requirement_from_issue",
    "requirement_propose",
    "ticket_accept",
    "ticket_add",
    "ticket_approve",
    "ticket_cancel",
    "ticket_reject",
    "ticket_retry",
    "ticket_spec_update",
    "tickets_reorder",
]

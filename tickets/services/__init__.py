"""Writes of the tickets domain; each submodule holds one entity's services."""

from __future__ import annotations

from tickets.services.attempts import CheckOutcome, attempt_finish, attempt_start
from tickets.services.projects import (
    GRANTS,
    MAX_TOKEN,
    clean_argv,
    project_connection_report_set,
    project_create,
    project_deploy_key_set,
    project_grant_set,
    project_host_keys_pin,
    project_settings_clean,
    project_setup_report_set,
    project_update,
    project_webhook_secret_rotate,
)
from tickets.services.requirements import (
    requirement_approve,
    requirement_conclude,
    requirement_create,
    requirement_deliver,
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
    "MAX_TOKEN",
    "CheckOutcome",
    "attempt_finish",
    "attempt_start",
    "clean_argv",
    "project_connection_report_set",
    "project_create",
    "project_deploy_key_set",
    "project_grant_set",
    "project_host_keys_pin",
    "project_settings_clean",
    "project_setup_report_set",
    "project_update",
    "project_webhook_secret_rotate",
    "requirement_approve",
    "requirement_conclude",
    "requirement_create",
    "requirement_deliver",
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

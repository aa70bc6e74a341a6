"""The platform core's periodic work: the sweep that seals audit rows no writer sealed."""

from __future__ import annotations

import logging

from celery import shared_task

from haao.audit import organizations_with_unsealed_rows, seal_each

logger = logging.getLogger(__name__)


@shared_task(name="haao.seal_audit_logs")
def seal_audit_logs() -> None:
    """Seal what a writer left (it died between its commit and its seal, or its seal failed).

    Every writer seals its own rows after commit, so this usually finds nothing."""
    for organization_id, sealed in seal_each(organizations_with_unsealed_rows()).items():
        if sealed:
            logger.info("audit: sealed %d row(s) of organization %s left by a writer",
                        sealed, organization_id)

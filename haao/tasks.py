"""The platform core's periodic work: the sweep that seals audit rows no writer sealed."""

from __future__ import annotations

import logging

from celery import shared_task

from haao.audit import organizations_with_unsealed_rows, seal

logger = logging.getLogger(__name__)


@shared_task(name="haao.seal_audit_logs")
def seal_audit_logs() -> None:
    """Seal what a writer left (it died between its commit and its seal, or its seal failed).

    Every writer seals its own rows after commit, so this usually finds nothing."""
    for organization_id in organizations_with_unsealed_rows():
        try:
            sealed = seal(organization_id)
        except Exception:  # the next organization still gets sealed; the next sweep retries
            logger.exception("audit: sealing organization %s failed", organization_id)
            continue
        if sealed:
            logger.info("audit: sealed %d row(s) of organization %s left by a writer",
                        sealed, organization_id)

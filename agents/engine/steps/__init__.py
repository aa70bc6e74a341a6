"""The steps of the loop, one module per Celery task: each loads by id, claims, works, records.

Every step is safe to deliver twice: it claims its work with a compare-and-set (an attempt's
stage, a lease row) before anything costly, and its writes are fenced by the claim, so a
second delivery returns without a second model call, usage row or attempt. What follows a
step is enqueued only after its transaction commits (through tickets.state's side effects).

    dispatch.py   dispatch_project   start a project's next attempts
    model.py      model_step         the coder (or the Tech Lead) writes the edits
    checks.py     check_step         the edits applied, the Definition of Done run
    audit.py      audit_step         the Tech Lead judges passing work
    merge.py      merge_step         accepted work joins its integration branch
    decompose.py  decompose_step     a requirement becomes proposed tickets
    common.py     leases, heartbeat, what follows an attempt's end
"""

from __future__ import annotations

from agents.engine.steps.audit import audit_step
from agents.engine.steps.checks import check_step
from agents.engine.steps.common import after_attempt, lease_seconds
from agents.engine.steps.decompose import decompose_step
from agents.engine.steps.dispatch import dispatch_project
from agents.engine.steps.merge import merge_step
from agents.engine.steps.model import model_step

__all__ = ["after_attempt", "audit_step", "check_step", "decompose_step", "dispatch_project",
           "lease_seconds", "merge_step", "model_step"]

"""The decisions of a policy at each point where an agent acts, and the record of a refusal.

Each check returns a `Refusal` naming the rule and the value that fired, or None. The engine
calls them before dispatch, before edits are applied, before each command runs, before every
cloud call and before an audit; the "try it" box of the console and the API calls the same.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import Membership, Organization
from accounts.roles import Role
from haao.audit import SYSTEM, audit_record
from haao.errors import ApplicationError
from policies import rules
from policies.redaction import redact
from policies.selectors import EffectivePolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """A rule said no: which rule, the value that fired, and a sentence for people."""

    rule: str
    value: Any
    message: str

    def data(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, Decimal):
            value = str(value)
        return {"rule": self.rule, "value": value, "message": self.message[:1000]}


# --- Paths and the size of a change ----------------------------------------------------------

def path_refusal(policy: EffectivePolicy, path: str) -> Refusal | None:
    """Whether agents may change `path` under the policy ("never" wins over "may")."""
    # Denied paths match however the checkout's file system would spell the same file.
    denied = rules.path_matches(path, policy.denied_paths, fold=True)
    if denied is not None:
        return Refusal("denied_paths", denied,
                       f"{path} matches {denied!r}, which agents may never change.")
    if rules.path_matches(path, policy.allowed_paths) is None:
        return Refusal("allowed_paths", policy.allowed_paths,
                       f"{path} is outside the paths agents may change "
                       f"({', '.join(policy.allowed_paths) or 'none'}).")
    return None


def edits_refusal(policy: EffectivePolicy, paths: Sequence[str]) -> Refusal | None:
    """The first refused path of a change, or a change of too many files."""
    for path in dict.fromkeys(paths):
        refusal = path_refusal(policy, path)
        if refusal is not None:
            return refusal
    files = len(set(paths))
    if files > policy.max_changed_files:
        return Refusal("max_changed_files", policy.max_changed_files,
                       f"The change touches {files} files; the policy allows at most "
                       f"{policy.max_changed_files}.")
    return None


# --- Commands ----------------------------------------------------------------------------------

def command_refusal(policy: EffectivePolicy, argv: Sequence[str]) -> Refusal | None:
    """Whether a Definition-of-Done check may start its program (argv[0])."""
    program = str(argv[0]) if argv else ""
    if program in policy.allowed_programs:
        option = rules.inline_code_option(argv)
        if option and not policy.inline_code:
            return Refusal("inline_code", False,
                           f"The check runs code typed on its command line ({program[:100]} "
                           f"{option} …), which the policy does not allow: run a file of the "
                           "repository instead, or an admin turns on inline code.")
        return None
    shown = program[:100]
    return Refusal("allowed_programs", shown,
                   f"The check runs {shown!r}, which the policy does not allow (allowed: "
                   f"{', '.join(policy.allowed_programs) or 'none'}).")


# --- Audit -------------------------------------------------------------------------------------

def audit_wanted(policy: EffectivePolicy, *, ticket_id: Any) -> bool:
    """Whether the Tech Lead audits this ticket's passed work. A sample is drawn from the
    ticket's id, so every delivery and every later attempt decides the same."""
    if policy.audit_mode == "off":
        return False
    if policy.audit_mode == "all":
        return True
    digest = hashlib.sha256(str(ticket_id).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < policy.audit_sample_percent


# --- Cloud calls -------------------------------------------------------------------------------

def residency_refusal(policy: EffectivePolicy, *, endpoint: Any) -> Refusal | None:
    if policy.data_residency and endpoint.is_cloud:
        return Refusal("data_residency", True,
                       f"Data residency is on: {endpoint.name} is a cloud endpoint, and no "
                       "cloud model may be called for this project.")
    return None


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0,
                                                microsecond=0)


@dataclass(frozen=True)
class Budget:
    """One spend cap that applies to a call, and what is spent against it so far."""

    rule: str
    cap: Decimal
    spent: Decimal
    what: str

    def refusal(self, estimate: Decimal) -> Refusal | None:
        if self.spent + estimate <= self.cap:
            return None
        return Refusal(self.rule, self.cap,
                       f"The cloud spend cap of {self.cap} USD for {self.what} would be "
                       f"exceeded: {self.spent:.4f} USD spent, and the call could cost up to "
                       f"{estimate:.4f} USD. No request was made.")


def over_budget(budgets: list[Budget], estimate: Decimal) -> Refusal | None:
    """The first cap a call that may cost up to `estimate` would go over."""
    for budget in budgets:
        refusal = budget.refusal(estimate)
        if refusal is not None:
            return refusal
    return None


# The smallest call: a cap it does not fit is already reached, and no call is even counted.
ANY_CALL = Decimal("0.000001")


# --- Recording a refusal -----------------------------------------------------------------------

def refusal_record(*, organization: Organization, refusal: Refusal, policy: EffectivePolicy,
                   ticket: Any = None, requirement: Any = None, point: str) -> None:
    """The refusal as an event of the ticket (or requirement), in the audit log; a spend cap
    also tells the organization's admins, after commit."""
    target = ticket if ticket is not None else requirement
    project_id = getattr(target, "project_id", None)
    audit_record(organization=organization, actor=SYSTEM, type="guardrail.refused",
                 target=target, target_label=getattr(target, "key", ""),
                 project_id=project_id,
                 data={**({"ticket": ticket.key} if ticket is not None else {}),
                       **({"requirement": requirement.key} if requirement is not None else {}),
                       "point": point, "policy_version": policy.version, **refusal.data()})
    if refusal.rule.endswith("_cloud_cap_usd"):
        what = target.key if target is not None else organization.name
        transaction.on_commit(functools.partial(
            _notify_admins, organization=organization,
            subject=f"Cloud spend cap reached ({what})", body=refusal.message))


def _notify_admins(*, organization: Organization, subject: str, body: str) -> None:
    emails = list(Membership.objects.for_org(organization).filter(role=Role.ADMIN)
                  .values_list("user__email", flat=True))
    if not emails:
        return
    try:
        send_mail(subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{subject}",
                  message=f"{organization.name}: {body}\n\nAdmins can change the caps under "
                          "Policies in the admin console.\n",
                  from_email=None, recipient_list=emails)
    except Exception:
        logger.exception("Could not mail the admins of %s about a spend cap", organization.pk)


# --- Try it ------------------------------------------------------------------------------------

def policy_try(policy: EffectivePolicy, *, path: str = "", command: Sequence[str] = (),
               payload: str = "", known: Iterable[str] = ()) -> dict[str, Any]:
    """What the policy says of a path, a command and a payload, as the engine would decide."""

    known = list(known)
    result: dict[str, Any] = {}

    def shown(decision: dict[str, Any]) -> dict[str, Any]:
        # A command or path typed in may carry a secret (`curl -H "Authorization: …"`); the
        # answer repeats it, so it is redacted like the text bound for a cloud model.
        return {key: redact(value, known=known).text if isinstance(value, str) else value
                for key, value in decision.items()}

    if path:
        refusal = path_refusal(policy, path)
        result["path"] = shown({"allowed": refusal is None, **(
            refusal.data() if refusal else {"message": f"{path} may be changed."})})
    if command:
        refusal = command_refusal(policy, command)
        result["command"] = shown({"allowed": refusal is None, **(
            refusal.data() if refusal else {"message": f"{command[0]!r} may run in a check."})})
    if payload:
        redacted = redact(payload, known=known)
        result["payload"] = {"redactions": redacted.count, "kinds": redacted.kinds,
                             "sent": redacted.text}
    return result


class GuardrailRefused(ApplicationError):
    """A policy refused an action at its point of action; the refusal is recorded already."""

    code = "guardrail_refused"
    status = 403

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"Refused by policy ({refusal.rule}): {refusal.message}",
                         details=refusal.data())
        self.refusal = refusal

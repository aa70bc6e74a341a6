"""The organization's tamper-evident audit log: writing rows into the chain and verifying it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.dispatch import Signal
from django.utils import timezone

from haao.models import ActorType, AuditChainHead, AuditEvent

if TYPE_CHECKING:
    from accounts.models import Organization, User

GENESIS = "0" * 64

# Sent after commit for each stored event that belongs to a project; tickets.live passes it
# to the project's and ticket's live sockets.
event_stored = Signal()


@dataclass(frozen=True)
class Actor:
    """Who did something: a user, a model (by name) or HAAO itself."""

    type: str
    label: str
    user: User | None = None

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(ActorType.USER, user.email, user)

    @classmethod
    def model(cls, name: str) -> Actor:
        return cls(ActorType.MODEL, name)


SYSTEM = Actor(ActorType.SYSTEM, "HAAO")


def _canonical(event: AuditEvent) -> bytes:
    payload = {
        "organization": str(event.organization_id),
        "seq": event.seq,
        "created_at": event.created_at.isoformat(),
        "actor_type": event.actor_type,
        "actor_user": event.actor_user_id,
        "actor_label": event.actor_label,
        "type": event.type,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_label": event.target_label,
        "project_id": str(event.project_id) if event.project_id else None,
        "data": event.data,
        "prev_hash": event.prev_hash,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return text.encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


def audit_record(
    *,
    organization: Organization,
    actor: Actor,
    type: str,
    target: models.Model | None = None,
    target_label: str = "",
    data: dict[str, Any] | None = None,
    project_id: Any = None,
) -> AuditEvent:
    """Append one event to the organization's chain, inside the caller's transaction."""
    with transaction.atomic():
        # The row lock serialises writers of one organization: the chain never forks.
        head = AuditChainHead.objects.select_for_update().filter(
            organization=organization).first()
        if head is None:  # the organization's first event
            AuditChainHead.objects.get_or_create(organization=organization)
            head = AuditChainHead.objects.select_for_update().get(organization=organization)
        event = AuditEvent(
            organization=organization,
            seq=head.last_seq + 1,
            created_at=timezone.now(),
            actor_type=actor.type,
            actor_user=actor.user,
            actor_label=actor.label[:255],
            type=type,
            target_type=target._meta.label_lower if target is not None else "",
            target_id=str(target.pk) if target is not None else "",
            target_label=(target_label or (str(target) if target is not None else ""))[:255],
            project_id=project_id,
            data=json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder)),
            prev_hash=head.last_hash,
        )
        event.hash = compute_hash(event)
        event.save(force_insert=True)
        AuditChainHead.objects.filter(pk=head.pk).update(last_seq=event.seq, last_hash=event.hash)
    if project_id:
        # Live sockets of the project and ticket hear of it once it is visible to them: after
        # the caller's commit, outside the chain's row lock, and never raising into the caller.
        transaction.on_commit(lambda: event_stored.send(AuditEvent, event=event), robust=True)
    return event


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


def audit_chain_verify(*, organization: Organization) -> ChainBreak | None:
    """The first broken row of the organization's chain, or None when it is intact."""
    expected_prev = GENESIS
    expected_seq = 1
    rows: Iterator[AuditEvent] = (
        AuditEvent.objects.for_org(organization).order_by("seq").iterator(chunk_size=2000)
    )
    for event in rows:
        if event.seq != expected_seq:
            return ChainBreak(expected_seq, f"row {expected_seq} is missing")
        if event.prev_hash != expected_prev:
            return ChainBreak(event.seq, "its link to the previous row does not match")
        if compute_hash(event) != event.hash:
            return ChainBreak(event.seq, "its content does not match its hash")
        expected_prev = event.hash
        expected_seq += 1
    head = AuditChainHead.objects.filter(organization=organization).first()
    if head is not None and head.last_seq != expected_seq - 1:
        return ChainBreak(expected_seq, f"the log ends at row {expected_seq - 1} "
                                        f"but {head.last_seq} rows were written")
    return None

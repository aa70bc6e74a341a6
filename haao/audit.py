"""The organization's tamper-evident audit log: writing rows into the chain and verifying it."""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection, models, transaction
from django.dispatch import Signal
from django.utils import timezone

from haao.models import ActorType, AuditChainHead, AuditEvent, ProgressEvent

if TYPE_CHECKING:
    from accounts.models import Organization, User

GENESIS = "0" * 64

logger = logging.getLogger(__name__)

# Sent once an event of a project is sealed (has its seq) and committed; tickets.live passes
# it to the project's and ticket's live sockets.
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


def _row_fields(*, organization: Organization, actor: Actor, type: str,
                target: models.Model | None, target_label: str, data: dict[str, Any] | None,
                project_id: Any) -> dict[str, Any]:
    return {
        "organization": organization,
        "created_at": timezone.now(),
        "actor_type": actor.type,
        "actor_label": actor.label[:255],
        "type": type,
        "target_type": target._meta.label_lower if target is not None else "",
        "target_id": str(target.pk) if target is not None else "",
        "target_label": (target_label or (str(target) if target is not None else ""))[:255],
        "project_id": project_id,
        "data": json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder)),
    }


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
    """Append one event to the organization's audit log, inside the caller's transaction.

    One INSERT, no lock: the organization's sealer chains it once the caller commits."""
    event = AuditEvent(actor_user=actor.user, **_row_fields(
        organization=organization, actor=actor, type=type, target=target,
        target_label=target_label, data=data, project_id=project_id))
    event.save(force_insert=True)
    seal_after_commit(organization.pk)
    return event


@dataclass(frozen=True)
class Entry:
    """One event of a batch (audit_records): what, on what, with what."""

    type: str
    target: models.Model | None = None
    target_label: str = ""
    data: dict[str, Any] | None = None
    project_id: Any = None


def audit_records(*, organization: Organization, actor: Actor,
                  entries: list[Entry]) -> list[AuditEvent]:
    """Append several events to the organization's audit log with one multi-row INSERT,
    inside the caller's transaction (sealed after commit, as audit_record's)."""
    if not entries:
        return []
    events = AuditEvent.objects.bulk_create([
        AuditEvent(actor_user=actor.user, **_row_fields(
            organization=organization, actor=actor, type=entry.type, target=entry.target,
            target_label=entry.target_label, data=entry.data, project_id=entry.project_id))
        for entry in entries])
    seal_after_commit(organization.pk)
    return events


def progress_record(
    *,
    organization: Organization,
    actor: Actor,
    type: str,
    target: models.Model | None = None,
    target_label: str = "",
    data: dict[str, Any] | None = None,
    project_id: Any = None,
) -> ProgressEvent:
    """Append one progress event (streamed live, not part of the audit chain)."""
    event = ProgressEvent(**_row_fields(
        organization=organization, actor=actor, type=type, target=target,
        target_label=target_label, data=data, project_id=project_id))
    event.save(force_insert=True)
    seal_after_commit(organization.pk)
    return event


# --- The sealer -----------------------------------------------------------------------------

# Rows sealed per transaction; a longer backlog takes several.
SEAL_BATCH = 500


class _Seal:
    """An after-commit call of seal(organization): one per organization and transaction.

    In a worker process with a background sealer the organization is handed to it instead,
    so the transactions of the next moment share one seal."""

    def __init__(self, organization_id: Any) -> None:
        self.organization_id = organization_id

    def __call__(self) -> None:
        sealer = BackgroundSealer.of_this_process()
        if sealer is not None:
            sealer.hand(self.organization_id)
        else:
            seal(self.organization_id)


def seal_after_commit(organization_id: Any) -> None:
    """Seal the organization's new rows once the caller's transaction commits (at once when
    there is none). A failed seal never reaches the caller: the next one, or the beat's
    sweep (haao.seal_audit_logs), takes the rows."""
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(
            isinstance(call, _Seal) and call.organization_id == organization_id
            for _, call, _ in connection.run_on_commit):
        return
    transaction.on_commit(_Seal(organization_id), robust=True)


def _ordered(audit: list[AuditEvent], progress: list[ProgressEvent]) -> list[Any]:
    """Both tables' unsealed rows (each read oldest first, at most SEAL_BATCH) in the order
    they were written: each table's in insert order, the two merged by time. A table whose
    batch is full may have older rows unread, so nothing after its last row is taken now."""
    rows: list[Any] = list(heapq.merge(audit, progress, key=attrgetter("created_at")))
    cut = len(rows)
    for batch in (audit, progress):
        if len(batch) == SEAL_BATCH:
            cut = min(cut, rows.index(batch[-1]) + 1)
    return rows[:cut]


def seal(organization_id: Any) -> int:
    """Number and chain the organization's unsealed rows, oldest first; how many it sealed.

    Writers only insert. One sealer at a time holds the organization's chain head (others
    return at once); after each batch it looks again, so a row committed while it held the
    head, whose writer found the head taken, is sealed by this sealer and never waits.
    The live streams hear of each row after it is sealed (event_stored)."""
    total = 0
    while True:
        sealed = _seal_batch(organization_id)
        if sealed is None:
            return total  # another sealer holds the head, and looks again after its batch
        total += sealed
        if not unsealed_waiting(organization_id):
            return total


def _seal_batch(organization_id: Any) -> int | None:
    """Seal one batch of the organization's unsealed rows (at most SEAL_BATCH of each kind);
    how many, or None when another sealer holds the chain head."""
    with transaction.atomic():
        head = _head_locked(organization_id)
        if head is None:
            if AuditChainHead.objects.filter(organization_id=organization_id).exists():
                return None
            AuditChainHead.objects.get_or_create(organization_id=organization_id)
            return _seal_batch(organization_id)
        audit = _unsealed(AuditEvent, organization_id)
        progress = _unsealed(ProgressEvent, organization_id)
        rows = _ordered(audit, progress)
        seq, last_hash = head
        for row in rows:
            seq += 1
            row.seq = seq
            if isinstance(row, AuditEvent):
                row.prev_hash = last_hash
                row.hash = last_hash = compute_hash(row)
        if rows:
            _seals_store(rows, organization_id=organization_id, head=(seq, last_hash))
            streamed = [row for row in rows if row.project_id]
            if streamed:
                transaction.on_commit(partial(_stored, streamed), robust=True)
        return len(rows)


# The sealer's statements are written out: they run several times a second in every worker,
# and composing them through the ORM (bulk_update builds a CASE expression per row; a
# queryset's SELECT is composed anew on every run) cost more CPU than the rest of a seal.
# SQL that SQLite and PostgreSQL share (SQLite has no row locks: its writers queue for the
# whole database); psycopg sends an executemany's rows in one pipeline.
_HEAD = ("SELECT last_seq, last_hash FROM accounts_auditchainhead WHERE organization_id = %s"
         "{lock}")
_UNSEALED = ("SELECT * FROM {table} WHERE organization_id = %s AND seq IS NULL "
             "ORDER BY id LIMIT %s")
_SEAL_AUDIT = "UPDATE accounts_auditevent SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s"
_SEAL_PROGRESS = "UPDATE haao_progressevent SET seq = %s WHERE id = %s"
_HEAD_MOVE = ("UPDATE accounts_auditchainhead SET last_seq = %s, last_hash = %s "
              "WHERE organization_id = %s")
_WAITING = ("SELECT EXISTS (SELECT 1 FROM accounts_auditevent WHERE organization_id = %s "
            "AND seq IS NULL) OR EXISTS (SELECT 1 FROM haao_progressevent "
            "WHERE organization_id = %s AND seq IS NULL)")


def _organization(organization_id: Any) -> Any:
    """The organization's id as the database stores it (a UUID is text in SQLite)."""
    return AuditChainHead._meta.pk.get_db_prep_value(organization_id, connection)


def _head_locked(organization_id: Any) -> tuple[int, str] | None:
    """The organization's chain head (last seq, last hash), locked until commit; None when
    there is none or another sealer holds it."""
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked \
        else ""
    with connection.cursor() as cursor:
        cursor.execute(_HEAD.format(lock=lock), [_organization(organization_id)])
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def _unsealed(model: type[AuditEvent] | type[ProgressEvent], organization_id: Any) -> list[Any]:
    """The organization's unsealed rows of `model`, oldest first, at most SEAL_BATCH."""
    return list(model.objects.raw(_UNSEALED.format(table=model._meta.db_table),
                                  [_organization(organization_id), SEAL_BATCH]))


def _seals_store(rows: list[Any], *, organization_id: Any, head: tuple[int, str]) -> None:
    """Write the rows' seq (and an audit row's hashes), then move the chain's head."""
    audit = [(row.seq, row.prev_hash, row.hash, row.pk)
             for row in rows if isinstance(row, AuditEvent)]
    progress = [(row.seq, row.pk) for row in rows if isinstance(row, ProgressEvent)]
    with connection.cursor() as cursor:
        if audit:
            cursor.executemany(_SEAL_AUDIT, audit)
        if progress:
            cursor.executemany(_SEAL_PROGRESS, progress)
        cursor.execute(_HEAD_MOVE, [*head, _organization(organization_id)])


def unsealed_waiting(organization_id: Any) -> bool:
    """Whether any committed row of the organization waits for a sealer (one query)."""
    with connection.cursor() as cursor:
        cursor.execute(_WAITING, [_organization(organization_id)] * 2)
        return bool(cursor.fetchone()[0])


def _stored(rows: list[Any]) -> None:
    for row in rows:
        event_stored.send(type(row), event=row)


class BackgroundSealer:
    """A worker process's sealer thread. Writers hand it their organization after commit and
    go on; it waits `gather` seconds for more, then seals each organization handed to it
    once. A seal costs about as much for one row as for fifty, so one seal serves every
    transaction of that moment; rows committed while it sealed wait for the next gathering
    with the rest. Rows it never reached (the process was killed) are sealed
    by the next writer's seal or by the beat's sweep."""

    _enabled = False
    _current: BackgroundSealer | None = None

    def __init__(self, *, gather: float) -> None:
        self.gather = gather
        self._waiting: set[Any] = set()
        self._stopping = False
        self._changed = threading.Condition()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="haao-audit-sealer", daemon=True)

    @classmethod
    def enable(cls, **signal: object) -> None:
        """Seal in the background in this process and the worker processes forked from it
        (Celery's worker_init)."""
        cls._enabled = settings.HAAO_AUDIT_SEAL_GATHER_MS > 0

    @classmethod
    def of_this_process(cls) -> BackgroundSealer | None:
        """This process's running sealer, started on first use (a forked child starts its
        own: threads do not survive a fork); None where sealing happens in the writer."""
        if not cls._enabled:
            return None
        current = cls._current
        if current is None or current._pid != os.getpid():
            current = cls._current = cls(gather=settings.HAAO_AUDIT_SEAL_GATHER_MS / 1000)
            current._thread.start()
        return current

    @classmethod
    def shut_down(cls, **signal: object) -> None:
        """Seal what was handed over, stop the thread, and seal in the caller from now on
        (Celery's worker_process_shutdown and worker_shutdown)."""
        cls._enabled = False
        current, cls._current = cls._current, None
        if current is not None and current._pid == os.getpid():
            with current._changed:
                current._stopping = True
                current._changed.notify_all()
            current._thread.join(STOP_SECONDS)

    def hand(self, organization_id: Any) -> None:
        with self._changed:
            self._waiting.add(organization_id)
            self._changed.notify_all()

    def _run(self) -> None:
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(lambda: self._waiting or self._stopping)
                    if not self._waiting:
                        return
                    # Gather: more hand-overs only join the batch; stopping cuts it short.
                    self._changed.wait_for(lambda: self._stopping, timeout=self.gather)
                    organizations, self._waiting = self._waiting, set()
                close_old_connections()  # one a database restart or an error left unusable
                for organization_id in organizations:
                    if self._seal(organization_id):
                        self.hand(organization_id)
        finally:
            connection.close()

    def _seal(self, organization_id: Any) -> bool:
        """Seal a batch of the organization's rows; whether more are waiting. Rows committed
        while this seal held the head join the next gathered seal, instead of a seal at once
        after each (under steady writes that was a seal per commit again). A stopping
        sealer looks again at once, until nothing waits: it has no next gathering."""
        try:
            if self._stopping:
                seal(organization_id)
                return False
            sealed = _seal_batch(organization_id)
            return sealed is not None and unsealed_waiting(organization_id)
        except Exception:
            logger.exception("audit: sealing organization %s failed", organization_id)
            return False


# How long a stopping worker waits for its sealer thread to seal what it holds.
STOP_SECONDS = 10


def seal_each(organization_ids: Iterable[Any]) -> dict[Any, int]:
    """Seal each organization's waiting rows; how many each had. One that fails is logged
    and the others still get sealed: the next seal, or the beat's sweep, takes its rows."""
    sealed: dict[Any, int] = {}
    for organization_id in organization_ids:
        try:
            sealed[organization_id] = seal(organization_id)
        except Exception:
            logger.exception("audit: sealing organization %s failed", organization_id)
    return sealed


def organizations_with_unsealed_rows() -> set[Any]:
    """Organizations with a row no sealer took yet (the beat's sweep seals them)."""
    return {*AuditEvent.objects.filter(seq__isnull=True).values_list(
                "organization_id", flat=True).distinct(),
            *ProgressEvent.objects.filter(seq__isnull=True).values_list(
                "organization_id", flat=True).distinct()}


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


def audit_chain_verify(*, organization: Organization,
                       window_seconds: float | None = None) -> ChainBreak | None:
    """The first broken row of the organization's chain, or None when it is intact.

    Sealed rows are checked in seq order (the numbers between them belong to progress events,
    which are not chained). A row still waiting for the sealer is a break once it has waited
    longer than `window_seconds` (HAAO_AUDIT_SEAL_WINDOW): its content is not protected yet.
    """
    expected_prev = GENESIS
    last_seq = 0
    rows: Iterator[AuditEvent] = (
        AuditEvent.objects.for_org(organization).filter(seq__isnull=False).order_by("seq")
        .iterator(chunk_size=2000)
    )
    for event in rows:
        assert event.seq is not None
        if compute_hash(event) != event.hash:
            return ChainBreak(event.seq, "its content does not match its hash")
        if event.prev_hash != expected_prev:
            return ChainBreak(last_seq + 1, f"a row after row {last_seq} is missing or was "
                                            f"replaced: row {event.seq} does not link to it")
        expected_prev = event.hash
        last_seq = event.seq
    head = AuditChainHead.objects.filter(organization=organization).first()
    if head is not None and head.last_hash != expected_prev:
        return ChainBreak(last_seq + 1, f"the log ends at row {last_seq}, but the chain's head "
                                        f"holds a later row: rows after it were removed")
    window = settings.HAAO_AUDIT_SEAL_WINDOW if window_seconds is None else window_seconds
    late = (AuditEvent.objects.for_org(organization).filter(
        seq__isnull=True, created_at__lt=timezone.now() - timedelta(seconds=window))
        .order_by("id").first())
    if late is not None:
        return ChainBreak(last_seq + 1, f"a row written at {late.created_at.isoformat()} "
                                        f"({late.type}) was not sealed within {window} s")
    return None

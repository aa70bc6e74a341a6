"""The audit log is a per-organization hash chain; any edited or deleted row is found.

Writers only insert; the organization's sealer numbers and chains the rows after the writer's
commit (haao.audit.seal), in one sequence with the loop's progress events.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from haao.audit import (
    SYSTEM,
    Actor,
    BackgroundSealer,
    audit_chain_verify,
    audit_record,
    progress_record,
    seal,
)
from haao.models import AuditEvent, ProgressEvent
from haao.tasks import seal_audit_logs
from tests.fixtures import tampering


def write_events(org, n: int) -> None:
    for i in range(n):
        audit_record(organization=org, actor=SYSTEM, type="test.event", data={"i": i})
    seal(org.pk)  # what the writer's commit does


def test_events_chain_each_row_to_the_previous_one(cast) -> None:
    write_events(cast.org, 3)
    rows = list(AuditEvent.objects.for_org(cast.org).order_by("seq"))
    assert [r.seq for r in rows][-3:] == [len(rows) - 2, len(rows) - 1, len(rows)]
    for previous, row in itertools.pairwise(rows):
        assert row.prev_hash == previous.hash
    assert audit_chain_verify(organization=cast.org) is None


def test_a_row_is_numbered_and_chained_by_the_sealer_not_by_its_writer(cast) -> None:
    seal(cast.org.pk)
    event = audit_record(organization=cast.org, actor=SYSTEM, type="test.event")
    event.refresh_from_db()
    assert event.seq is None and event.hash == "" and not event.sealed
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 1
    assert seal(cast.org.pk) == 1
    event.refresh_from_db()
    assert event.sealed and len(event.hash) == 64
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()


def test_the_writers_commit_seals_its_rows(cast, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for i in range(3):
            audit_record(organization=cast.org, actor=SYSTEM, type="test.event", data={"i": i})
    assert len(callbacks) == 1  # one seal per transaction and organization, not per row
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()
    assert audit_chain_verify(organization=cast.org) is None


def test_progress_events_share_the_sequence_but_not_the_chain(cast) -> None:
    seal(cast.org.pk)
    audit_record(organization=cast.org, actor=SYSTEM, type="test.before")
    progress_record(organization=cast.org, actor=SYSTEM, type="attempt.tokens")
    progress_record(organization=cast.org, actor=SYSTEM, type="attempt.check")
    audit_record(organization=cast.org, actor=SYSTEM, type="test.after")
    seal(cast.org.pk)
    audit = list(AuditEvent.objects.for_org(cast.org).order_by("-seq")[:2])[::-1]
    progress = list(ProgressEvent.objects.for_org(cast.org).order_by("seq"))
    assert [e.type for e in audit] == ["test.before", "test.after"]
    assert [p.seq for p in progress] == [audit[0].seq + 1, audit[0].seq + 2]
    assert audit[1].seq == audit[0].seq + 3
    assert audit[1].prev_hash == audit[0].hash  # the chain steps over the progress rows
    assert not AuditEvent.objects.filter(type__startswith="attempt.").exists()
    assert audit_chain_verify(organization=cast.org) is None


def test_each_organization_has_its_own_chain(cast) -> None:
    write_events(cast.org, 2)
    write_events(cast.other_org, 2)
    first_other = AuditEvent.objects.for_org(cast.other_org).order_by("seq").first()
    assert first_other.seq == 1 and first_other.prev_hash == "0" * 64


@pytest.mark.parametrize("field,value", [
    ("type", "membership.removed"), ("actor_label", "someone@else.test"),
    ("data", {"i": 99}), ("created_at", "2020-01-01T00:00:00Z"), ("target_id", "x"),
])
def test_editing_any_field_of_any_row_is_detected(cast, field, value) -> None:
    write_events(cast.org, 5)
    victim = AuditEvent.objects.for_org(cast.org).order_by("seq")[2]
    with tampering():
        AuditEvent.objects.filter(pk=victim.pk).update(**{field: value})
    broken = audit_chain_verify(organization=cast.org)
    assert broken is not None and broken.seq == victim.seq
    with pytest.raises(CommandError, match="broken audit chain"):
        call_command("verify_audit_chain", org=cast.org.slug)


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_deleting_a_row_is_detected(cast, position) -> None:
    write_events(cast.org, 5)
    rows = list(AuditEvent.objects.for_org(cast.org).order_by("seq"))
    victim = {"first": rows[0], "middle": rows[2], "last": rows[-1]}[position]
    AuditEvent.objects.filter(pk=victim.pk).delete()
    broken = audit_chain_verify(organization=cast.org)
    assert broken is not None and broken.seq == victim.seq


@pytest.mark.parametrize("change", [{"data": {"i": 99}}, {"type": "x.y"}, {"seq": 999},
                                    {"hash": "0" * 64}])
def test_the_database_refuses_to_change_a_written_row(cast, change) -> None:
    write_events(cast.org, 1)
    sealed = AuditEvent.objects.for_org(cast.org).order_by("-seq").first()
    pending = audit_record(organization=cast.org, actor=SYSTEM, type="test.pending")
    targets = [sealed] if set(change) & {"seq", "hash"} else [sealed, pending]
    for row in targets:
        with pytest.raises(DatabaseError, match="cannot change once written"), \
                transaction.atomic():
            AuditEvent.objects.filter(pk=row.pk).update(**change)
    seal(cast.org.pk)  # numbering the pending row is the one change allowed
    assert audit_chain_verify(organization=cast.org) is None


def test_a_row_left_unsealed_past_the_window_is_a_break(cast, capsys) -> None:
    write_events(cast.org, 2)
    with tampering():  # written two minutes ago by a writer that died before sealing it
        late = audit_record(organization=cast.org, actor=SYSTEM, type="test.late")
        AuditEvent.objects.filter(pk=late.pk).update(
            created_at=timezone.now() - timedelta(seconds=120))
    assert [e.type for e in AuditEvent.objects.filter(seq__isnull=True)] == ["test.late"]
    broken = audit_chain_verify(organization=cast.org, window_seconds=60)
    assert broken is not None and "test.late" in broken.reason
    assert "was not sealed within 60 s" in broken.reason
    assert audit_chain_verify(organization=cast.org, window_seconds=600) is None
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", org=cast.org.slug, no_seal=True)
    call_command("verify_audit_chain", org=cast.org.slug)  # seals it first
    assert "acme: intact" in capsys.readouterr().out
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()


def test_the_beats_sweep_seals_what_writers_left(cast) -> None:
    audit_record(organization=cast.org, actor=SYSTEM, type="test.left")
    progress_record(organization=cast.other_org, actor=SYSTEM, type="attempt.tokens")
    seal_audit_logs()
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()
    assert not ProgressEvent.objects.filter(seq__isnull=True).exists()


def test_a_backlog_longer_than_a_batch_is_sealed_in_order(cast, monkeypatch) -> None:
    monkeypatch.setattr("haao.audit.SEAL_BATCH", 4)
    seal(cast.org.pk)
    for i in range(7):
        audit_record(organization=cast.org, actor=SYSTEM, type="test.a", data={"i": i})
        progress_record(organization=cast.org, actor=SYSTEM, type="attempt.b", data={"i": i})
    assert seal(cast.org.pk) == 14
    rows = sorted([*AuditEvent.objects.filter(type="test.a"),
                   *ProgressEvent.objects.filter(type="attempt.b")], key=lambda r: r.seq)
    assert [(r.type, r.data["i"]) for r in rows] == [
        (kind, i) for i in range(7) for kind in ("test.a", "attempt.b")]
    assert audit_chain_verify(organization=cast.org) is None


def test_verify_command_reports_intact_chains(cast, capsys) -> None:
    write_events(cast.org, 2)
    call_command("verify_audit_chain")
    assert "acme: intact" in capsys.readouterr().out


def test_user_actor_is_attributed(cast) -> None:
    event = audit_record(organization=cast.org, actor=Actor.of(cast.admin), type="x.y")
    assert event.actor_user == cast.admin and event.actor_label == cast.admin.email


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain(cast) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is exercised against PostgreSQL")
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(10):
                with transaction.atomic():
                    audit_record(organization=cast.org, actor=SYSTEM, type="test.event",
                                 data={"i": i})
                    progress_record(organization=cast.org, actor=SYSTEM, type="attempt.x")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # Every row was sealed by some writer's commit, none twice: one gapless sequence.
    seqs = sorted([*AuditEvent.objects.for_org(cast.org).values_list("seq", flat=True),
                   *ProgressEvent.objects.for_org(cast.org).values_list("seq", flat=True)])
    assert seqs == list(range(1, len(seqs) + 1))
    assert audit_chain_verify(organization=cast.org) is None


@pytest.mark.django_db(transaction=True)
def test_a_writer_never_waits_for_another_writers_transaction(cast) -> None:
    """The chain's head is held only while sealing: an open transaction that wrote an event
    does not stop another writer (it did while rows were chained on insert)."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are exercised against PostgreSQL")
    written = threading.Event()
    release = threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                audit_record(organization=cast.org, actor=SYSTEM, type="test.slow")
                written.set()
                release.wait(60)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    try:
        assert written.wait(10)
        with transaction.atomic():
            audit_record(organization=cast.org, actor=SYSTEM, type="test.quick")
        assert thread.is_alive(), "the quick writer finished only after the slow one"
        quick = AuditEvent.objects.get(type="test.quick")
        assert quick.sealed, "the quick writer's commit sealed its row"
    finally:
        release.set()
        thread.join()
    slow = AuditEvent.objects.get(type="test.slow")
    assert slow.sealed and slow.seq > quick.seq  # numbered in commit order
    assert audit_chain_verify(organization=cast.org) is None


@pytest.mark.django_db(transaction=True)
def test_a_workers_commits_share_its_sealer_threads_seals(cast, settings,
                                                           django_assert_max_num_queries) -> None:
    """In a Celery worker, a writer hands its organization to the process's sealer thread
    and goes on; the commits of one gathering are sealed together, and what is handed over
    when the worker stops is sealed before it ends."""
    if connection.vendor != "postgresql":
        pytest.skip("a second thread's connection is exercised against PostgreSQL")
    settings.HAAO_AUDIT_SEAL_GATHER_MS = 300
    BackgroundSealer.enable()  # what a worker's start does
    try:
        sealer = BackgroundSealer.of_this_process()
        assert sealer is not None and BackgroundSealer.of_this_process() is sealer
        with django_assert_max_num_queries(4 * 12):  # 12 transactions of 1 INSERT, no seal
            for i in range(12):
                with transaction.atomic():
                    audit_record(organization=cast.org, actor=SYSTEM, type="test.event",
                                 data={"i": i})
        assert not AuditEvent.objects.filter(seq__isnull=False).exists(), \
            "the writers sealed their own rows"
        deadline = time.monotonic() + 10
        while AuditEvent.objects.filter(seq__isnull=True).exists():
            assert time.monotonic() < deadline, "the sealer thread sealed nothing in 10 s"
            time.sleep(0.05)
        seqs = list(AuditEvent.objects.for_org(cast.org).order_by("seq")
                    .values_list("seq", "data__i"))
        assert seqs == [(n + 1, n) for n in range(12)]  # numbered in the order written
        assert audit_chain_verify(organization=cast.org) is None

        with transaction.atomic():
            progress_record(organization=cast.org, actor=SYSTEM, type="attempt.tokens")
    finally:
        BackgroundSealer.shut_down()
    assert ProgressEvent.objects.get(type="attempt.tokens").seq == 13, \
        "a row handed over as the worker stopped was left unsealed"
    assert BackgroundSealer.of_this_process() is None  # writers seal their own again
    assert not sealer._thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_under_steady_writes_the_sealer_thread_seals_once_a_gathering_not_once_a_commit(
        cast, settings, monkeypatch) -> None:
    """A writer that never pauses: rows committed while a seal runs wait for the next
    gathering instead of a seal of their own at once, and none is left unsealed."""
    if connection.vendor != "postgresql":
        pytest.skip("a second thread's connection is exercised against PostgreSQL")
    import haao.audit

    batches: list[int | None] = []
    seal_batch = haao.audit._seal_batch

    def counted(organization_id):
        batches.append(sealed := seal_batch(organization_id))
        return sealed

    monkeypatch.setattr(haao.audit, "_seal_batch", counted)
    settings.HAAO_AUDIT_SEAL_GATHER_MS = 200
    BackgroundSealer.enable()
    try:
        started = time.monotonic()
        written = 0
        while time.monotonic() - started < 1.5:
            with transaction.atomic():
                audit_record(organization=cast.org, actor=SYSTEM, type="test.event",
                             data={"i": written})
            written += 1
        elapsed = time.monotonic() - started
        seals_while_writing = len(batches)
    finally:
        BackgroundSealer.shut_down()
    assert written > 50
    # One seal a gathering (plus the one under way when the writing stopped), not one for
    # each commit that landed while the previous seal held the head.
    assert seals_while_writing <= elapsed / 0.2 + 2, (seals_while_writing, written)
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()
    seqs = list(AuditEvent.objects.for_org(cast.org).order_by("seq").values_list("seq", "data__i"))
    assert seqs == [(n + 1, n) for n in range(written)]
    assert audit_chain_verify(organization=cast.org) is None


def test_a_role_with_the_documented_grants_writes_and_seals_but_cannot_edit_or_delete(
        cast) -> None:
    """docs/events.md: HAAO's processes may run as a role that inserts audit rows and
    updates only the sealer's columns."""
    if connection.vendor != "postgresql":
        pytest.skip("column privileges are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE haao_app_check")
        cursor.execute("GRANT USAGE ON SCHEMA public TO haao_app_check")
        cursor.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO haao_app_check")
        cursor.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO haao_app_check")
        # The grants of docs/events.md:
        cursor.execute("REVOKE UPDATE, DELETE, TRUNCATE ON accounts_auditevent "
                       "FROM haao_app_check")
        cursor.execute("GRANT SELECT, INSERT ON accounts_auditevent TO haao_app_check")
        cursor.execute("GRANT UPDATE (seq, prev_hash, hash) ON accounts_auditevent "
                       "TO haao_app_check")
        cursor.execute("SET ROLE haao_app_check")
    try:
        write_events(cast.org, 3)
        row = AuditEvent.objects.for_org(cast.org).order_by("-seq").first()
        assert row.sealed
        for change in (lambda: AuditEvent.objects.filter(pk=row.pk).update(type="x"),
                       lambda: AuditEvent.objects.filter(pk=row.pk).delete()):
            with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
                change()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert audit_chain_verify(organization=cast.org) is None

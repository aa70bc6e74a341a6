"""The audit log is a per-organization hash chain; any edited or deleted row is found."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from haao.audit import SYSTEM, Actor, audit_chain_verify, audit_record
from haao.models import AuditEvent


def write_events(org, n: int) -> None:
    for i in range(n):
        audit_record(organization=org, actor=SYSTEM, type="test.event", data={"i": i})


def test_events_chain_each_row_to_the_previous_one(cast) -> None:
    write_events(cast.org, 3)
    rows = list(AuditEvent.objects.for_org(cast.org).order_by("seq"))
    assert [r.seq for r in rows][-3:] == [len(rows) - 2, len(rows) - 1, len(rows)]
    for previous, row in itertools.pairwise(rows):
        assert row.prev_hash == previous.hash
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
            write_events(cast.org, 10)
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
    seqs = list(AuditEvent.objects.for_org(cast.org).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert audit_chain_verify(organization=cast.org) is None

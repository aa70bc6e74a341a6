"""A worker keeps its database connection from task to task, as long as CONN_MAX_AGE allows
and no error left it unusable (haao/celery.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection

from haao.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def max_age() -> Iterator[None]:
    """Connections that may live a minute (PostgreSQL's default here; SQLite's is 0)."""
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("Django never closes the in-memory SQLite test database (PostgreSQL does)")
    before = connection.settings_dict["CONN_MAX_AGE"]
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = 60
    connection.ensure_connection()
    yield
    connection.settings_dict["CONN_MAX_AGE"] = before


class Task:
    """A task as a worker runs it: not inline."""

    request = type("Request", (), {"is_eager": False})()


def between_two_tasks() -> None:
    """What a worker runs after one task and before the next, fix-up included."""
    fixup = DjangoWorkerFixup(app)
    task_postrun.send(sender=Task, task=Task())
    fixup.on_task_postrun(sender=Task())
    task_prerun.send(sender=Task, task=Task())
    fixup.on_task_prerun(sender=Task())


def test_the_next_task_uses_the_same_connection(max_age: None) -> None:
    first = connection.connection
    between_two_tasks()
    assert connection.connection is first


def test_a_connection_older_than_conn_max_age_is_closed_between_tasks(max_age: None) -> None:
    connection.close_at = time.monotonic() - 1
    first = connection.connection
    between_two_tasks()
    assert connection.connection is None or connection.connection is not first


def test_a_task_run_inline_leaves_its_callers_connection_alone(max_age: None) -> None:
    inline = type("Task", (), {"request": type("Request", (), {"is_eager": True})()})()
    first = connection.connection
    connection.close_at = time.monotonic() - 1  # would be closed between worker tasks
    task_prerun.send(sender=type(inline), task=inline)
    assert connection.connection is first

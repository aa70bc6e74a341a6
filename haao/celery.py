"""The Celery application; configuration comes from Django settings (CELERY_*)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready
from django.db import close_old_connections

from haao import reads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haao.settings")

app = Celery("haao")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Celery's Django fix-up closes every database connection before and after each task, so a
# worker opened a new PostgreSQL connection per task. Workers keep them the way web requests
# do instead: Django's close_old_connections() around each task closes one that outlived
# CONN_MAX_AGE or that an error left unusable, and keeps the others.
app.conf.CELERY_DB_REUSE_MAX = sys.maxsize  # the fix-up's own closing, never


def _run_by_a_worker(task: Any) -> bool:
    # A task run inline (HAAO_TASKS_EAGER, tests) is inside its caller's transaction and
    # request: its connection and reads are its caller's.
    return task is None or not getattr(task.request, "is_eager", False)


# Around each task a worker runs: its connection kept when still good, and its policy and
# endpoints read once however many of its steps ask (haao.reads).
@task_prerun.connect
def _task_starts(*, task: Any = None, **kwargs: Any) -> None:
    if _run_by_a_worker(task):
        close_old_connections()
        reads.task_started()


@task_postrun.connect
def _task_ended(*, task: Any = None, **kwargs: Any) -> None:
    if _run_by_a_worker(task):
        close_old_connections()
        reads.task_finished()


# `manage.py serve` waits for this file before it prints where HAAO is and how to log in, so
# those lines come after the worker's start-up output instead of scrolling away under it.
READY_FILE_VARIABLE = "HAAO_WORKER_READY_FILE"


@worker_ready.connect
def _tell_serve_the_worker_is_ready(**kwargs: object) -> None:
    path = os.environ.get(READY_FILE_VARIABLE)
    if path:
        Path(path).touch()

"""The Celery application; configuration comes from Django settings (CELERY_*)."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haao.settings")

app = Celery("haao")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# `manage.py serve` waits for this file before it prints where HAAO is and how to log in, so
# those lines come after the worker's start-up output instead of scrolling away under it.
READY_FILE_VARIABLE = "HAAO_WORKER_READY_FILE"


@worker_ready.connect
def _tell_serve_the_worker_is_ready(**kwargs: object) -> None:
    path = os.environ.get(READY_FILE_VARIABLE)
    if path:
        Path(path).touch()

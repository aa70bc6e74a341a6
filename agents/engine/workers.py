"""Which worker holds which step, and whether that worker is still alive.

A step's message can die with the worker that took it from the queue before the step claimed
its attempt (a `kill -9`, the machine lost): no lease was taken, so nothing expires, and the
broker may not give the message back for a long time. So each worker process announces
itself with a heartbeat in the shared cache, under a name of its own incarnation (a restarted
worker is a new one), and notes each model or check step it receives. Recovery
(agents.engine.recovery) sends a step again at once when the worker that received it has
stopped beating, instead of waiting HAAO_RESEND_AFTER_SECONDS for a message that may never
come. The cache is Redis with REDIS_URL and the database otherwise, so this holds on the
embedded broker and on Redis alike.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from celery.signals import celeryd_after_setup, task_received, worker_ready, worker_shutdown
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

# A live worker writes its heartbeat this often; one silent for three beats is gone.
HEARTBEAT_SECONDS = 5
GONE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
# The steps whose receipt is noted, and the argument naming their attempt.
HELD_STEPS = frozenset({"haao.model_step", "haao.check_step"})

_incarnation = ""
_stopped = threading.Event()
# The queues this worker takes steps from (its pool's processes inherit them).
_queues: frozenset[str] = frozenset()


def _beat_key(incarnation: str) -> str:
    return f"haao:worker:{incarnation}"


def _holder_key(attempt_id: Any) -> str:
    return f"haao:step-holder:{attempt_id}"


def incarnation() -> str:
    """This worker process's name for this start: host, process id and a random part."""
    global _incarnation
    if not _incarnation:
        _incarnation = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return _incarnation


def beat() -> None:
    cache.set(_beat_key(incarnation()), 1, timeout=GONE_AFTER_SECONDS)


def _beat_until_stopped() -> None:
    while not _stopped.wait(HEARTBEAT_SECONDS):
        try:
            beat()
        except Exception:  # a cache that failed once may answer the next beat
            logger.warning("worker heartbeat failed", exc_info=True)


@worker_ready.connect
def start_heartbeat(**kwargs: Any) -> None:
    beat()
    threading.Thread(target=_beat_until_stopped, name="haao-heartbeat", daemon=True).start()


@worker_shutdown.connect
def stop_heartbeat(**kwargs: Any) -> None:
    """A worker stopped on purpose says so at once (its steps are then sent again)."""
    _stopped.set()
    if _incarnation:
        cache.delete(_beat_key(_incarnation))


@celeryd_after_setup.connect
def note_queues(instance: Any = None, **kwargs: Any) -> None:
    global _queues
    if instance is not None:
        _queues = frozenset(instance.app.amqp.queues.consume_from)


def takes(queue: str) -> bool:
    """Whether this worker takes steps from `queue`: a step bound for it may run here at
    once instead of going through the broker (never outside a worker)."""
    return queue in _queues


@task_received.connect
def note_holder(request: Any = None, **kwargs: Any) -> None:
    """Remember which worker took a model or check step from its queue."""
    if request is None or request.name not in HELD_STEPS:
        return
    attempt_id = (request.kwargs or {}).get("attempt_id")
    if attempt_id:
        cache.set(_holder_key(attempt_id), incarnation(),
                  timeout=2 * settings.HAAO_RESEND_AFTER_SECONDS)


def held_by_lost_workers(attempt_ids: Iterable[Any]) -> set[Any]:
    """The attempts among `attempt_ids` whose step was received by a worker that no longer
    beats; two cache reads whatever their number."""
    keys = {_holder_key(attempt_id): attempt_id for attempt_id in attempt_ids}
    holders = {keys[key]: holder for key, holder in cache.get_many(list(keys)).items()
               if holder}
    beating = cache.get_many([_beat_key(holder) for holder in set(holders.values())])
    return {attempt_id for attempt_id, holder in holders.items()
            if _beat_key(holder) not in beating}

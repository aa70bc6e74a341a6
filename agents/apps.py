from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The engine follows ticket state changes and new requirements (agents/engine/hooks).
        # Its tasks are registered in every process, web included: agents.engine.enqueue
        # sends them by name.
        from agents import tasks  # noqa: F401
        from agents.engine import hooks, workers  # noqa: F401  (workers: heartbeats, holders)

        hooks.register()

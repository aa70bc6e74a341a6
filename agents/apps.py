from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The engine follows ticket state changes and new requirements (agents/engine/hooks).
        from agents.engine import hooks

        hooks.register()

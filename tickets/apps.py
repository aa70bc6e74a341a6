from __future__ import annotations

from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from accounts.signals import access_reduced
        from haao.audit import event_stored
        from tickets import live

        event_stored.connect(live.event_stored, dispatch_uid="tickets.live.event_stored")
        access_reduced.connect(live.access_reduced, dispatch_uid="tickets.live.access_reduced")
        user_logged_out.connect(live.user_logged_out, dispatch_uid="tickets.live.logged_out")

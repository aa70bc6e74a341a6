"""WebSocket routes of the tickets app: live event streams (tickets/consumers.py)."""

from __future__ import annotations

from django.urls import URLPattern, path

from tickets.consumers import ProjectEventsConsumer, TicketEventsConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/o/<str:org>/projects/<str:key>/events/", ProjectEventsConsumer.as_asgi()),
    path("ws/o/<str:org>/tickets/<str:key>/events/", TicketEventsConsumer.as_asgi()),
]

"""WebSocket routes; each app's consumers are listed here."""

from __future__ import annotations

from django.urls import URLPattern

from tickets.routing import websocket_urlpatterns as tickets_patterns

websocket_urlpatterns: list[URLPattern] = [*tickets_patterns]

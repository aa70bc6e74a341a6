"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haao.settings")
django_asgi_app = get_asgi_application()

from importlib import import_module  # noqa: E402

from channels.auth import AuthMiddleware  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from channels.sessions import CookieMiddleware  # noqa: E402
from django.conf import settings  # noqa: E402

from haao.routing import websocket_urlpatterns  # noqa: E402


class SameOriginValidator(OriginValidator):
    """Channels' OriginValidator over settings.WEBSOCKET_ALLOWED_ORIGINS, read per socket."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    def validate_origin(self, parsed_origin: Any) -> bool:
        return any(self.match_allowed_origin(parsed_origin, pattern)
                   for pattern in settings.WEBSOCKET_ALLOWED_ORIGINS)


class ReadOnlySessionMiddleware:
    """The socket's Django session, from its cookie, for sockets that never change it.

    Channels' SessionMiddleware wraps every send to ask whether the session needs saving,
    which on a busy stream (one message per socket per event) was a sixth of the web
    process's CPU (docs/benchmarks.md, "Live events"); HAAO's sockets only stream, and sign-in
    happens over HTTP.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if "cookies" not in scope:
            raise ValueError("ReadOnlySessionMiddleware needs Channels' CookieMiddleware above.")
        store = import_module(settings.SESSION_ENGINE).SessionStore
        session = store(scope["cookies"].get(settings.SESSION_COOKIE_NAME))
        return await self.inner({**scope, "session": session}, receive, send)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # A socket opens only from a page of HAAO itself: scheme, host and port all match
        # one of WEBSOCKET_ALLOWED_ORIGINS (a host alone would let http://haao:8080 in).
        "websocket": SameOriginValidator(CookieMiddleware(ReadOnlySessionMiddleware(
            AuthMiddleware(URLRouter(websocket_urlpatterns))))),
    }
)

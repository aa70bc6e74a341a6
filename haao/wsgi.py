"""WSGI entry point (HTTP only; the portal's live updates need ASGI)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "haao.settings")
application = get_wsgi_application()

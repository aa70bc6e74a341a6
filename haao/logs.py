"""Logging pieces the settings' LOGGING refers to."""

from __future__ import annotations

import logging


class NoTracebackForClientErrors(logging.Filter):
    """Logs a refused request (a 4xx: not found, forbidden, bad request) as its one-line
    warning: the traceback of an ordinary refusal is noise in the console, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True

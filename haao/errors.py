"""The one family of domain errors that services raise; views and the API translate them."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A rule of the domain was broken; `code` is stable, `message` is for people."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class Forbidden(ApplicationError):
    code = "forbidden"
    status = 403


class Conflict(ApplicationError):
    code = "conflict"
    status = 409


def field_error(field: str, message: str) -> ApplicationError:
    """A 400 naming the input field it is about, in the message and in `details`."""
    return ApplicationError(f"{field}: {message}", details={field: [message]})

"""One TLS context per process for every model client (building one costs ~30 ms of CPU)."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying context httpx would build for each client, built once."""
    return httpx.create_ssl_context()

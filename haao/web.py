"""The web process: uvicorn serving `haao.asgi` (HTTP through Django, WebSockets through
Channels), started the same way by `manage.py serve`, the test servers and bench/live.py.

Why uvicorn: a live event goes out to every open socket of its stream, and what a message
costs is mostly the server's write path. On asyncio's transports a write is one `send`; on
daphne's Twisted reactor it also adds and removes the socket from the poller, twice the work
(docs/benchmarks.md, "Live events").

Nothing here imports Django: the bench starts the server from a process that stays out of it.
"""

from __future__ import annotations

import sys

# uvicorn's defaults that HAAO does not want:
OPTIONS = (
    # The ASGI app has no lifespan handler (Django's has none).
    "--lifespan", "off",
    # Client addresses come from the peer, not from X-Forwarded-For: HAAO_BEHIND_PROXY
    # decides what a proxy's headers mean (haao/settings), as with any other server.
    "--no-proxy-headers",
    # No "server: uvicorn" in every answer, nor a line per request (as before, the
    # portal logs what it does itself).
    "--no-server-header", "--no-access-log",
    "--log-level", "warning",
    # permessage-deflate would compress every broadcast event once per socket.
    "--ws", "websockets-sansio", "--ws-per-message-deflate", "false",
    # Clients only listen on a stream; nothing they send is read.
    "--ws-max-size", "65536",
    # SIGTERM: open sockets are closed (clients reconnect) and the process exits in time.
    "--timeout-graceful-shutdown", "5",
)


def web_command(host: str, port: int) -> list[str]:
    """The command line of a web process on `host`:`port`."""
    return [sys.executable, "-m", "uvicorn", "haao.asgi:application", "--host", host,
            "--port", str(port), *OPTIONS]

"""Shared plumbing of the scripted model servers: recording, the reply script, HTTP and SSE."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

# The servers answer on loopback only: they stand in for paid APIs and must never be reachable
# from another machine (tests and the no-key demo both rely on this).
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it: method, path, lower-cased headers, body, arrival time."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    raw_body: bytes
    body: Any
    time: float

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header's value, looked up case-insensitively."""
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True)
class Response:
    """A plain HTTP reply; `body` is JSON-encoded unless `raw` bytes are given.

    `delay` holds the reply back (client read timeouts); `cut_after` and `interval` apply only
    when the server turns this reply into a stream because the request asked for one.
    """

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    cut_after: int | None = None
    interval: float = 0.0


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event; `data` is sent as is when a string, JSON-encoded otherwise."""

    data: Any
    event: str | None = None

    def encode(self) -> bytes:
        """The event on the wire, terminated by its blank line."""
        data = self.data if isinstance(self.data, str) else json.dumps(self.data)
        lines = [f"event: {self.event}"] if self.event else []
        lines += [f"data: {line}" for line in data.split("\n")]
        return ("\n".join(lines) + "\n\n").encode()


@dataclass(frozen=True)
class Stream:
    """A `text/event-stream` reply; `cut_after=N` drops the connection after N events."""

    events: Sequence[SSEEvent]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    interval: float = 0.0
    cut_after: int | None = None


@dataclass(frozen=True)
class Reset:
    """Close the connection without answering: a TCP reset, or a clean close if `abort` is off."""

    delay: float = 0.0
    abort: bool = True


Reply = Response | Stream | Reset
Responder = Callable[[RecordedRequest], Reply]


def delayed(reply: Reply, seconds: float) -> Reply:
    """The same reply, held back for `seconds` before anything is sent."""
    from dataclasses import replace

    return replace(reply, delay=seconds)


def invalid_json(status: int = 200, text: str = '{"id": "broken", "content": [') -> Response:
    """A reply that claims to be JSON but does not parse."""
    return Response(status=status, raw=text.encode(),
                    headers={"content-type": "application/json"})


def estimate_tokens(text: str) -> int:
    """The servers' deterministic token count: one token per started 4 characters."""
    return (len(text) + 3) // 4


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # A restarted test must be able to bind the port it just freed.
    allow_reuse_address = True

    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or drop a connection on purpose are part of the script.
        logger.debug("model server connection from %s ended abruptly", client_address,
                     exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        owner = self.server.owner
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        split = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_body=raw,
            body=body,
            time=time.time(),
        )
        owner._record(request)
        try:
            reply = owner._reply_for(request)
        except Exception:
            logger.exception("model server responder failed for %s %s", request.method,
                             request.path)
            reply = owner.server_error(request)
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False when it stopped."""
        return not (seconds > 0 and self.server.owner._stopping.wait(seconds))

    def _send(self, reply: Reply) -> None:
        if not self._wait(reply.delay):
            self.close_connection = True
            return
        if isinstance(reply, Reset):
            self._reset(abort=reply.abort)
        elif isinstance(reply, Stream):
            self._send_stream(reply)
        else:
            self._send_plain(reply)

    def _reset(self, *, abort: bool) -> None:
        self.close_connection = True
        if abort:
            # Linger 0 makes close() send RST instead of FIN: the client sees a reset connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()

    def _send_plain(self, reply: Response) -> None:
        payload = reply.raw if reply.raw is not None else (
            b"" if reply.body is None else json.dumps(reply.body).encode())
        self.send_response(reply.status)
        headers = {"content-type": "application/json", **dict(reply.headers)}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_stream(self, reply: Stream) -> None:
        self.send_response(reply.status)
        headers = {"content-type": "text/event-stream; charset=utf-8",
                   "cache-control": "no-cache", **dict(reply.headers)}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for count, event in enumerate(reply.events):
            if reply.cut_after is not None and count >= reply.cut_after:
                # Mid-stream failure: no terminating chunk, the client sees a truncated body.
                self._reset(abort=False)
                return
            if count and not self._wait(reply.interval):
                self._reset(abort=False)
                return
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class ScriptedServer:
    """An HTTP server on 127.0.0.1 in a background thread that answers from a per-test script.

    Each request is recorded, then answered by the first queued reply whose path matches
    (see `enqueue`), else by `responder` (by default the protocol's own routing).
    """

    name = "scripted"

    def __init__(self, *, port: int = 0, responder: Responder | None = None) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queue: deque[tuple[str | None, Reply]] = deque()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.responder: Responder = responder or self.route

    # Life cycle -------------------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError(f"{self.name} server is already running on {self.url}")
        self._stopping.clear()
        httpd = _HTTPServer((LOOPBACK, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.name}-model-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and free the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the free one the system chose)."""
        if self._httpd is None:
            raise RuntimeError(f"{self.name} server is not running")
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`."""
        return f"http://{LOOPBACK}:{self.port}"

    # Script -----------------------------------------------------------------------------------

    def enqueue(self, *replies: Reply, path: str | None = None) -> None:
        """Queue replies for the next requests (to `path` only, when given), in order."""
        with self._lock:
            self._queue.extend((path, reply) for reply in replies)

    def reply_with(self, function: Callable[[RecordedRequest], Any]) -> Callable[..., Any]:
        """Compute answers of the model endpoint from the request; usable as a decorator."""
        self.answer = function
        return function

    @property
    def pending(self) -> int:
        """How many queued replies have not been used yet."""
        with self._lock:
            return len(self._queue)

    # Request log ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests to one path."""
        return [r for r in self.requests if r.path == path]

    def clear(self) -> None:
        """Forget recorded requests and queued replies."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    # Protocol hooks (overridden by the concrete servers) ---------------------------------------

    # What the model endpoint answers when the script is empty: set by `reply_with`.
    answer: Callable[[RecordedRequest], Any]

    def route(self, request: RecordedRequest) -> Reply:
        """The protocol's default answer to a request the script did not cover."""
        return Response(status=404, body={"error": f"no route for {request.path}"})

    def check(self, request: RecordedRequest) -> Reply | None:
        """A protocol-level rejection (authentication, bad JSON) that comes before the script."""
        return None

    def finalize(self, request: RecordedRequest, reply: Reply) -> Reply:
        """Fill what a reply left open (usage, model, ids) and turn it into a stream if asked."""
        return reply

    def server_error(self, request: RecordedRequest) -> Reply:
        """The answer when a responder itself raised."""
        return Response(status=500, body={"error": "responder failed"})

    # Internals --------------------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _take(self, path: str) -> Reply | None:
        with self._lock:
            for index, (wanted, reply) in enumerate(self._queue):
                if wanted is None or wanted == path:
                    del self._queue[index]
                    return reply
        return None

    def _reply_for(self, request: RecordedRequest) -> Reply:
        reply = self.check(request)
        if reply is None:
            reply = self._take(request.path)
        if reply is None:
            reply = self.responder(request)
        return self.finalize(request, reply)


def chunk_text(text: str, size: int = 12) -> Iterator[str]:
    """Split text into stream-sized pieces, on word boundaries where possible."""
    piece = ""
    for word in _words(text):
        if piece and len(piece) + len(word) > size:
            yield piece
            piece = ""
        piece += word
    if piece:
        yield piece


def _words(text: str) -> Iterable[str]:
    start = 0
    for index, char in enumerate(text):
        if char.isspace() and index + 1 < len(text) and not text[index + 1].isspace():
            yield text[start:index + 1]
            start = index + 1
    if start < len(text):
        yield text[start:]


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text of the last user turn, in either API's shape (what sample answers read)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "\n".join(str(part.get("text", "")) for part in content or []
                             if isinstance(part, Mapping) and part.get("type") == "text")
    return ""

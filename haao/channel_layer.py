"""Channel layers: one in an SQLite file, for the embedded defaults (no server, several
processes), and channels_redis's, with a blocking pop that fits redis-py's read timeout.

`make run` starts the web server and Celery workers as separate processes; Channels' in-memory
layer cannot reach across them, and Redis is what production uses. This layer keeps messages
and group memberships in one SQLite file (WAL mode) beside the embedded database, so a worker's
`group_send` reaches the web process's sockets. Receivers poll; latency is about the poll
interval. The stored event log stays the source of truth: this only notifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import string
import threading
import time
from pathlib import Path
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from channels_redis.core import RedisChannelLayer as _RedisChannelLayer

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    body TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS message_channel ON message (channel, id);
CREATE TABLE IF NOT EXISTS membership (
    grp TEXT NOT NULL,
    channel TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (grp, channel)
);
"""


class SQLiteChannelLayer(BaseChannelLayer):
    extensions = ["groups", "flush"]

    def __init__(self, path: str, expiry: int = 60, group_expiry: int = 86400,
                 capacity: int = 1000, poll_interval: float = 0.02, **kwargs: Any) -> None:
        super().__init__(expiry=expiry, capacity=capacity, **kwargs)
        self.path = Path(path)
        self.group_expiry = group_expiry
        self.poll_interval = poll_interval
        self._local = threading.local()
        self.client_prefix = "".join(random.choices(string.ascii_letters, k=12))

    # --- storage (runs in a thread) ----------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(SCHEMA)
            self._local.connection = connection
        return connection

    def _send(self, channel: str, body: str) -> None:
        db = self._db()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            (queued,) = db.execute("SELECT COUNT(*) FROM message WHERE channel = ? AND "
                                   "expires > ?", (channel, now)).fetchone()
            if queued >= self.get_capacity(channel):
                raise ChannelFull(channel)
            db.execute("INSERT INTO message (channel, body, expires) VALUES (?, ?, ?)",
                       (channel, body, now + self.expiry))
            if random.random() < 0.01:  # now and then, tidy up what nobody read
                db.execute("DELETE FROM message WHERE expires <= ?", (now,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _take(self, channel: str) -> str | None:
        db = self._db()
        row = db.execute("SELECT id, body FROM message WHERE channel = ? AND expires > ? "
                         "ORDER BY id LIMIT 1", (channel, time.time())).fetchone()
        if row is None:
            return None
        # Only the receiver whose delete succeeds gets the message.
        deleted = db.execute("DELETE FROM message WHERE id = ?", (row[0],)).rowcount
        return row[1] if deleted else None

    def _group_send(self, group: str, body: str) -> None:
        db = self._db()
        now = time.time()
        channels = [c for (c,) in db.execute(
            "SELECT channel FROM membership WHERE grp = ? AND expires > ?", (group, now))]
        for channel in channels:
            # Like the Redis layer: a full member misses the message, the others do not.
            with contextlib.suppress(ChannelFull):
                self._send(channel, body)

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        self._db().execute(sql, params)

    # --- the channel layer API ---------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        await asyncio.to_thread(self._send, channel, json.dumps(message))

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel, receive=True)
        while True:
            body = await asyncio.to_thread(self._take, channel)
            if body is not None:
                result: dict[str, Any] = json.loads(body)
                return result
            await asyncio.sleep(self.poll_interval)

    async def new_channel(self, prefix: str = "specific") -> str:
        suffix = "".join(random.choices(string.ascii_letters + string.digits, k=12))
        return f"{prefix}.sqlite.{self.client_prefix}{suffix}"

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        now = time.time()
        await asyncio.to_thread(
            self._execute, "INSERT OR REPLACE INTO membership (grp, channel, expires) "
            "VALUES (?, ?, ?)", (group, channel, now + self.group_expiry))
        if random.random() < 0.01:  # now and then, drop the memberships of gone sockets
            await asyncio.to_thread(self._execute, "DELETE FROM membership WHERE expires <= ?",
                                    (now,))

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await asyncio.to_thread(self._execute, "DELETE FROM membership WHERE grp = ? AND "
                                "channel = ?", (group, channel))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        await asyncio.to_thread(self._group_send, group, json.dumps(message))

    async def flush(self) -> None:
        await asyncio.to_thread(self._execute, "DELETE FROM message", ())
        await asyncio.to_thread(self._execute, "DELETE FROM membership", ())

    async def close(self) -> None:
        pass


class RedisChannelLayer(_RedisChannelLayer):
    """channels_redis's layer, its receiver waiting 2 s per blocking pop instead of 5.

    redis-py (6 and later) gives up on a read after 5 s, its default socket timeout: a pop
    waiting 5 s on an idle channel raced that timeout, so an idle receiver (a live socket's
    listener with nothing to say) got a TimeoutError about every 5 s, logged it and dropped
    its connection. A shorter pop comes back empty well before the timeout and waits again.
    """

    brpop_timeout = 2

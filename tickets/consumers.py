"""WebSocket streams of a project's and a ticket's events.

`ws/o/<org>/projects/<KEY>/events/?after=<seq>` and `ws/o/<org>/tickets/<KEY>/events/?after=
<seq>`: the events after `after` from the audit log, oldest first, then
`{"type": "caught_up", "seq": …}`, then each new event as it is committed. Every message is
`{"type": "event", "event": <the REST EventSerializer fields>}`.

The audit log is read for every send; a channel-layer notification only says "something after
seq N was committed". Each socket keeps the last seq it sent and handles one message at a
time (Channels dispatches a consumer's messages serially), so a notification that arrives
while the backlog is being sent waits and then finds nothing new: no duplicates, no gaps.
Events of an organization are numbered in commit order (the audit chain's row lock), so
"seq > last sent" never skips an event that commits late.

Refusals are decided before the socket is accepted, then sent as a close code right after
accepting (a server answers a close before accept with a bare HTTP 403, and browsers do not
show scripts its status): 4400 bad `after`, 4403 anonymous or a project the member may not
see, 4404 no such project or ticket in that organization, and no such organization or not a
member of it (the portal's one door answers both the same way, so nobody learns which other
organizations exist).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.models import AuditEvent
from accounts.selectors import membership_for
from tickets import live
from tickets.api.events import MAX_SEQ, EventSerializer
from tickets.models import Project, Ticket
from tickets.selectors import (
    PROJECT_KEY_RE,
    TICKET_KEY_RE,
    project_by_key,
    project_events,
    ticket_by_key,
    ticket_events,
)

# Events read from the database per query, for a backlog and for catching up.
PAGE = 500
# Recent events a process keeps per stream for its sockets (tickets/consumers.StreamCache).
CACHE_EVENTS = 2000
AFTER_RE = re.compile(r"[0-9]{1,19}\Z")

Frame = tuple[int, str]  # (seq, the text message sent for it)


class CloseCode(IntEnum):
    BAD_REQUEST = 4400
    FORBIDDEN = 4403
    NOT_FOUND = 4404


@dataclass(frozen=True)
class Stream:
    """What one socket follows: its group, and how to read its events after a seq."""

    key: str
    group: str
    read: Callable[[int, int], list[AuditEvent]]

    def frames(self, after: int, limit: int) -> list[Frame]:
        """Up to `limit` events after `after` as ready-to-send messages (runs in a thread)."""
        events = self.read(after, limit)
        data = EventSerializer(events, many=True).data
        return [(event.seq, json.dumps({"type": "event", "event": item}))
                for event, item in zip(events, data, strict=True)]


def parse_after(query_string: bytes) -> int | None:
    """The `after` of a query string (0 when absent); None when it is not a valid seq."""
    try:
        values = parse_qs(query_string.decode("ascii"), keep_blank_values=True).get("after")
    except (UnicodeDecodeError, ValueError):
        return None
    if not values:
        return 0
    if len(values) > 1 or not AFTER_RE.match(values[0]) or int(values[0]) > MAX_SEQ:
        return None
    return int(values[0])


def resolve_stream(*, user: Any, org_slug: str, kind: str, key: str) -> Stream | CloseCode:
    """The stream the caller asked for, or why not; the REST endpoints' rules (one thread)."""
    if not user.is_authenticated:
        return CloseCode.FORBIDDEN
    membership = membership_for(user=user, org_slug=org_slug)
    if membership is None:
        return CloseCode.NOT_FOUND
    org = membership.organization
    if kind == "project":
        project = project_by_key(membership=membership, key=key)
        if project is None:
            exists = (PROJECT_KEY_RE.match(key) is not None
                      and Project.objects.for_org(org).filter(key=key).exists())
            return CloseCode.FORBIDDEN if exists else CloseCode.NOT_FOUND
        return Stream(key=f"project:{project.pk}", group=live.project_group(project.pk),
                      read=lambda after, limit: project_events(project=project, after=after,
                                                               limit=limit))
    ticket = ticket_by_key(membership=membership, key=key)
    if ticket is None:
        match = TICKET_KEY_RE.match(key)
        exists = match is not None and Ticket.objects.for_org(org).filter(
            project__key=match[1], number=int(match[2])).exists()
        return CloseCode.FORBIDDEN if exists else CloseCode.NOT_FOUND
    return Stream(key=f"ticket:{ticket.pk}", group=live.ticket_group(ticket.pk),
                  read=lambda after, limit: ticket_events(ticket=ticket, after=after,
                                                          limit=limit))


class StreamCache:
    """The recent events of one stream in this process, shared by the sockets following it.

    Holds every event of the stream with a seq in (base, top], oldest first. When a
    notification arrives at 200 sockets of a project, the first one reads the new events
    once and the other 199 take them from here: one query and one serialization per burst,
    not per socket. A socket further behind than `base` reads the database itself.
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.lock = asyncio.Lock()
        self.base: int | None = None
        self.top = 0
        self.seqs: list[int] = []
        self.frames: list[Frame] = []
        self.users = 0

    async def after(self, last_seq: int, notified: int) -> list[Frame] | None:
        """The frames after `last_seq`, complete up to at least `notified`; None if too old."""
        async with self.lock:
            if self.base is None:
                self.base = self.top = last_seq
            if last_seq < self.base:
                return None
            if self.top < notified:
                # `notified` was committed before its notification was sent, so a read started
                # now sees it: afterwards the window is complete up to it.
                while True:
                    page = await database_sync_to_async(self.stream.frames)(self.top, PAGE)
                    for seq, text in page:
                        self.seqs.append(seq)
                        self.frames.append((seq, text))
                    if page:
                        self.top = page[-1][0]
                    if len(page) < PAGE:
                        break
                self.top = max(self.top, notified)
                self._trim()
            return self.frames[bisect.bisect_right(self.seqs, last_seq):]

    def _trim(self) -> None:
        extra = len(self.seqs) - CACHE_EVENTS
        if extra > 0:
            self.base = self.seqs[extra - 1]
            del self.seqs[:extra]
            del self.frames[:extra]


# Per event loop (one per server process; tests run several loops one after another).
_caches: dict[tuple[int, str], StreamCache] = {}


def cache_acquire(stream: Stream) -> StreamCache:
    key = (id(asyncio.get_running_loop()), stream.key)
    cache = _caches.get(key)
    if cache is None:
        cache = _caches[key] = StreamCache(stream)
    cache.users += 1
    return cache


def cache_release(cache: StreamCache) -> None:
    cache.users -= 1
    if cache.users <= 0:
        for key, value in list(_caches.items()):
            if value is cache:
                del _caches[key]


class EventStreamConsumer(AsyncWebsocketConsumer):
    """One socket following one project's or ticket's events; `kind` says which."""

    kind = "project"
    stream: Stream | None = None
    cache: StreamCache | None = None
    last_seq = 0

    async def connect(self) -> None:
        after = parse_after(self.scope.get("query_string", b""))
        if after is None:
            await self.refuse(CloseCode.BAD_REQUEST)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        decision = await database_sync_to_async(resolve_stream)(
            user=self.scope.get("user"), org_slug=kwargs["org"], kind=self.kind,
            key=kwargs["key"])
        if isinstance(decision, CloseCode):
            await self.refuse(decision)
            return
        self.stream = decision
        self.last_seq = after
        # Join before reading the backlog: an event committed meanwhile is either in the
        # backlog or announced afterwards (and then skipped when already sent).
        await self.channel_layer.group_add(decision.group, self.channel_name)
        self.cache = cache_acquire(decision)
        await self.accept()
        while True:
            page = await database_sync_to_async(decision.frames)(self.last_seq, PAGE)
            await self.send_frames(page)
            if len(page) < PAGE:
                break
        await self.send(text_data=json.dumps({"type": "caught_up", "seq": self.last_seq}))

    async def refuse(self, code: CloseCode) -> None:
        await self.accept()
        await self.close(code=int(code))

    async def disconnect(self, code: int) -> None:
        if self.stream is not None:
            await self.channel_layer.group_discard(self.stream.group, self.channel_name)
        if self.cache is not None:
            cache_release(self.cache)
            self.cache = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients only listen; what they send is ignored."""

    async def events_notify(self, message: dict[str, Any]) -> None:
        """A committed event of this stream (live.NOTIFY_TYPE): send what is new, in order."""
        if self.stream is None:
            return
        try:
            notified = int(message.get("seq", 0))
        except (TypeError, ValueError):
            return
        if notified <= self.last_seq:
            return  # already sent with the backlog or an earlier burst
        frames = await self.cache.after(self.last_seq, notified) if self.cache else None
        if frames is not None:
            await self.send_frames(frames)
            return
        while True:
            page = await database_sync_to_async(self.stream.frames)(self.last_seq, PAGE)
            await self.send_frames(page)
            if len(page) < PAGE:
                return

    async def send_frames(self, frames: list[Frame]) -> None:
        for seq, text in frames:
            if seq > self.last_seq:
                await self.send(text_data=text)
                self.last_seq = seq


class ProjectEventsConsumer(EventStreamConsumer):
    kind = "project"


class TicketEventsConsumer(EventStreamConsumer):
    kind = "ticket"

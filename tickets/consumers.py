"""WebSocket streams of a project's and a ticket's events.

`ws/o/<org>/projects/<KEY>/events/?after=<seq>` and `ws/o/<org>/tickets/<KEY>/events/?after=
<seq>`: the events after `after`, oldest first, then `{"type": "caught_up", "seq": …}`,
then each new event as it is sealed. Every message is
`{"type": "event", "event": <the REST EventSerializer fields>}`. With `&batch=1` (the
portal's client) the events a socket has to send at once go out as one message,
`{"type": "events", "events": [<event>, …]}`, oldest first: a socket that fell behind
catches up in one frame instead of one per event, so the busier the server, the fewer
messages it sends per event.

The database (audit log and progress events) is read for every send; a channel-layer
notification only says "something up to seq N was sealed". Each socket keeps the last seq it
sent and sends under its own lock (the backlog, then each catch-up), so a notification that
arrives while the backlog is being sent waits and then finds nothing new: no duplicates, no
gaps. Events of an organization are numbered by its sealer (haao.audit.seal) after their
writer commits, each batch in one transaction, so "seq > last sent" never skips an event that
commits late. One StreamHub per stream and process listens on the channel layer and reads new
events once for all of that process's sockets.

Refusals are decided before the socket is accepted, then sent as a close code right after
accepting (a server answers a close before accept with a bare HTTP 403, and browsers do not
show scripts its status): 4400 bad `after`, 4403 anonymous or a session that does not meet
the organization's sign-in rule, 4404 no such project or ticket, one the member may not see,
and no such organization or not a member of it (each pair answered the same way, so nobody
learns which projects or organizations exist).

Access is checked again while a socket is open: each socket of a process joins its user's
and its organization's AccessWatch, which hears `access.changed` (tickets.live, sent after a
membership, a role, a project grant or the sign-in rule changed, and at sign-out) and then
re-runs the opening check against the session store and the database; a socket that may no
longer stream is closed with the code it would get when opening. The watch also checks every
SAFETY_SECONDS, so a lost notification costs at most that delay.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from accounts.assurance import session_satisfies
from accounts.roles import hidden_event_prefixes
from accounts.selectors import membership_for
from tickets import live
from tickets.api.events import MAX_SEQ, EventSerializer
from tickets.selectors import (
    StreamEvent,
    project_by_key,
    project_events,
    ticket_by_key,
    ticket_events,
)

# Events read from the database per query, for a backlog and for catching up.
PAGE = 500
# Recent events a process keeps per stream for its sockets (StreamHub).
CACHE_EVENTS = 2000
logger = logging.getLogger(__name__)
# A hub re-reads its stream this often even without a notification (one dropped by a full or
# restarted layer costs at most this delay) and renews its group membership, which channel
# layers expire (a day by default).
SAFETY_SECONDS = 30.0
AFTER_RE = re.compile(r"[0-9]{1,19}\Z")

Frame = tuple[int, str]  # (seq, the event's JSON)


class CloseCode(IntEnum):
    BAD_REQUEST = 4400
    FORBIDDEN = 4403
    NOT_FOUND = 4404


@dataclass(frozen=True)
class Stream:
    """What one socket follows: its group, and how to read its events after a seq."""

    key: str
    group: str
    read: Callable[[int, int], list[StreamEvent]]
    organization_id: Any = None

    def frames(self, after: int, limit: int) -> list[Frame]:
        """Up to `limit` events after `after`, each encoded once (runs in a thread)."""
        events = self.read(after, limit)
        data = EventSerializer(events, many=True).data
        return [(event.seq or 0, json.dumps(item))
                for event, item in zip(events, data, strict=True)]


def messages(frames: list[Frame], *, batched: bool) -> list[str]:
    """The text messages that send `frames`: one per event, or one for all of them."""
    if not frames:
        return []
    if batched:
        return ['{"type": "events", "events": [' + ", ".join(text for _, text in frames)
                + "]}"]
    return ['{"type": "event", "event": ' + text + "}" for _, text in frames]


@dataclass(frozen=True)
class Query:
    after: int = 0
    batched: bool = False


def parse_query(query_string: bytes) -> Query | None:
    """A socket's `after` (0 when absent) and `batch` (0 or 1); None when either is bad."""
    try:
        params = parse_qs(query_string.decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None
    after, batch = params.get("after", ["0"]), params.get("batch", ["0"])
    if len(after) > 1 or not AFTER_RE.match(after[0]) or int(after[0]) > MAX_SEQ:
        return None
    if len(batch) > 1 or batch[0] not in ("0", "1"):
        return None
    return Query(after=int(after[0]), batched=batch[0] == "1")


def resolve_stream(*, user: Any, org_slug: str, kind: str, key: str,
                   session: Any = None) -> Stream | CloseCode:
    """The stream the caller asked for, or why not; the REST endpoints' rules (one thread),
    including the organization's sign-in rule (its own IdP where it requires SSO)."""
    if not user.is_authenticated:
        return CloseCode.FORBIDDEN
    membership = membership_for(user=user, org_slug=org_slug)
    if membership is None:
        return CloseCode.NOT_FOUND
    org = membership.organization
    if not session_satisfies(session=session, user=user, organization=org):
        return CloseCode.FORBIDDEN
    if kind == "project":
        project = project_by_key(membership=membership, key=key)
        if project is None:
            return CloseCode.NOT_FOUND
        # Members who may not read some event types follow a stream (and hub) without them.
        hidden = hidden_event_prefixes(membership.role)
        return Stream(key=f"project:{project.pk}:{','.join(hidden)}",
                      group=live.project_group(project.pk),
                      read=lambda after, limit: project_events(project=project, after=after,
                                                               limit=limit, hidden=hidden),
                      organization_id=org.pk)
    ticket = ticket_by_key(membership=membership, key=key)
    if ticket is None:
        return CloseCode.NOT_FOUND
    return Stream(key=f"ticket:{ticket.pk}", group=live.ticket_group(ticket.pk),
                  read=lambda after, limit: ticket_events(ticket=ticket, after=after,
                                                          limit=limit),
                  organization_id=org.pk)


def _stopping() -> bool:
    """Whether this task was asked to stop while a library turned the cancellation into an
    error of its own: redis-py reports a cancel that meets its read timeout as a
    TimeoutError, and a loop that took that for a busy Redis tried again for ever, keeping
    the listener of a closed socket (and a closing event loop) alive."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# A task told to stop is told again this often until it has. A library may swallow a cancel
# and wait on (a client that retries a read the cancel interrupted, a pop loop that takes the
# empty answer for a timeout and pops again), and a listener that never stops keeps receiving
# for nobody and holds its event loop open when that loop closes (a test run's last seen
# hang: an event loop closing, waiting for such a task).
STOP_AGAIN_SECONDS = 0.5


def stop(task: asyncio.Task[Any]) -> None:
    """Cancel `task`, and cancel it again every STOP_AGAIN_SECONDS until it is done."""
    if task.done():
        return
    task.cancel()
    asyncio.get_running_loop().call_later(STOP_AGAIN_SECONDS, stop, task)


class GroupListener:
    """One channel-layer group followed by this process on behalf of its sockets: a channel
    of its own in the group, a receive loop handing each message to `received`, and a
    SAFETY_SECONDS timer that renews the group (layers expire it) and calls `refreshed`.
    The first socket to join starts both; the last to leave stops them."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.lock = asyncio.Lock()
        self.members: set[EventStreamConsumer] = set()
        self.channel = ""
        self.listener: asyncio.Task[None] | None = None
        self.refresher: asyncio.Task[None] | None = None

    async def join(self, consumer: EventStreamConsumer) -> None:
        """Follow the group; once this returns, every later message reaches `consumer`."""
        async with self.lock:
            if self.listener is None:
                layer = get_channel_layer()
                # One prefix for every listener: channels_redis reads every process-local
                # channel of one prefix with one blocking pop, and a second prefix would hold
                # that pop (and the others' messages) while it waits on its own list.
                self.channel = await layer.new_channel("live")
                await layer.group_add(self.group, self.channel)
                self.listener = asyncio.ensure_future(self._listen(layer, self.channel))
                self.refresher = asyncio.ensure_future(self._refresh(layer, self.channel))
            self.members.add(consumer)

    async def leave(self, consumer: EventStreamConsumer) -> bool:
        """Stop following; True when no socket of this process follows the group any more."""
        async with self.lock:
            self.members.discard(consumer)
            if self.members or self.listener is None:
                return False
            stop(self.listener)
            self.listener = None
            if self.refresher is not None:
                stop(self.refresher)
                self.refresher = None
            with contextlib.suppress(Exception):
                await get_channel_layer().group_discard(self.group, self.channel)
            return True

    async def _listen(self, layer: Any, channel: str) -> None:
        failures = 0
        while True:
            if _stopping():  # a cancel a layer swallowed, returning as if nothing happened
                raise asyncio.CancelledError
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if _stopping():
                    raise asyncio.CancelledError from error
                # A blocking pop can time out on a busy Redis (redis-py's read timeout): try
                # again at once, and back off only while the layer keeps failing. A message
                # lost on the way is made up for by `refreshed`.
                failures += 1
                logger.warning("live: receiving on %s failed (%d in a row): %r",
                               self.group, failures, error)
                await asyncio.sleep(min(1.0, 0.05 * (2 ** (failures - 1))) if failures > 1
                                    else 0)
                continue
            failures = 0
            self.received(message)

    async def _refresh(self, layer: Any, channel: str) -> None:
        while True:
            await asyncio.sleep(SAFETY_SECONDS)
            if _stopping():
                raise asyncio.CancelledError
            for step in (lambda: layer.group_add(self.group, channel), self.refreshed):
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if _stopping():
                        raise asyncio.CancelledError from error
                    # Each step on its own: a layer that cannot renew the group does not
                    # keep the sockets from being checked.
                    logger.exception("live: refreshing %s failed", self.group)

    def received(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def refreshed(self) -> None:
        raise NotImplementedError


class StreamHub(GroupListener):
    """One stream in this process: its group subscription and its recent events, shared by
    every socket following it.

    The hub, not each socket, joins the stream's group, with one channel of its own: a
    notification crosses the channel layer once per process and is handed to the sockets
    here (200 sockets on a project cost one Redis delivery per event, not 200, and on the
    embedded layer one poller instead of 200). The hub also holds every event of the stream
    with a seq in (base, top], oldest first.

    A notification starts one delivery (`_deliver`): the hub reads the new events once, then
    sends each idle socket what it lacks, in one pass and one task for all of them. A socket
    that is busy (sending its backlog, or closing) or further behind than `base` is woken
    instead and catches up on its own (`EventStreamConsumer._drain`), from here or from the
    database. Notifications that arrive during a pass are served by the next one, so the
    busier the stream, the more events a pass carries.
    """

    def __init__(self, stream: Stream) -> None:
        super().__init__(stream.group)
        self.stream = stream
        self.base: int | None = None
        self.top = 0
        self.seqs: list[int] = []
        self.frames: list[Frame] = []
        self.notified = 0
        self.delivery: asyncio.Task[None] | None = None

    def received(self, message: dict[str, Any]) -> None:
        try:
            seq = int(message.get("seq", 0))
        except (TypeError, ValueError):
            return
        self.announce(seq)

    async def refreshed(self) -> None:
        self.announce(await self._read_new())

    def announce(self, seq: int) -> None:
        """Events up to `seq` are committed: deliver them (after the pass under way, if any)."""
        if seq <= self.notified:
            return
        self.notified = seq
        if self.delivery is None or self.delivery.done():
            self.delivery = asyncio.ensure_future(self._deliver())

    async def _deliver(self) -> None:
        delivered = 0
        while self.notified > delivered and self.members:
            target = delivered = self.notified
            try:
                async with self.lock:
                    self._open_window()
                    if self.base is not None and self.top < target:
                        await self._fetch()
                        self.top = max(self.top, target)
                        self._trim()
            except Exception:
                logger.exception("live: reading %s failed; each socket tries itself",
                                 self.group)
                for member in list(self.members):
                    member.wake(target)
                continue
            # Sockets that had sent the same last event get the same messages, made once.
            made: dict[tuple[int, bool], tuple[list[str], int]] = {}
            for member in list(self.members):
                if member.hub is not self or member.last_seq >= target:
                    continue
                if member.sending.locked() or self.base is None or member.last_seq < self.base:
                    member.wake(target)
                    continue
                key = (member.last_seq, member.batched)
                if key not in made:
                    start = bisect.bisect_right(self.seqs, member.last_seq)
                    if start == len(self.seqs):
                        continue  # nothing this stream shows (events it hides)
                    made[key] = (messages(self.frames[start:], batched=member.batched),
                                 self.seqs[-1])
                await member.send_now(*made[key])

    async def _read_new(self) -> int:
        """Read whatever was committed after `top` (no notification needed); the new top."""
        async with self.lock:
            self._open_window()
            if self.base is None:
                return 0
            await self._fetch()
            self._trim()
            return self.top

    def _open_window(self) -> None:
        """Start the window where the sockets that finished their backlog are: one still
        sending its own is behind it and catches up by itself."""
        if self.base is not None:
            return
        idle = [member.last_seq for member in self.members if not member.sending.locked()]
        if idle:
            self.base = self.top = min(idle)

    async def _fetch(self) -> None:
        while True:
            page = await database_sync_to_async(self.stream.frames)(self.top, PAGE)
            for seq, text in page:
                self.seqs.append(seq)
                self.frames.append((seq, text))
            if page:
                self.top = page[-1][0]
            if len(page) < PAGE:
                return

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
                await self._fetch()
                self.top = max(self.top, notified)
                self._trim()
            return self.frames[bisect.bisect_right(self.seqs, last_seq):]

    def _trim(self) -> None:
        extra = len(self.seqs) - CACHE_EVENTS
        if extra > 0:
            self.base = self.seqs[extra - 1]
            del self.seqs[:extra]
            del self.frames[:extra]


class AccessWatch(GroupListener):
    """One user's or one organization's access group in this process, shared by its sockets:
    an `access.changed` there makes each socket check again. A user's watch (`timed`) also
    checks every SAFETY_SECONDS (a lost notification, a changed password or a deactivated
    account); every socket has one, so its organization's watch does not repeat that."""

    def __init__(self, group: str, *, timed: bool) -> None:
        super().__init__(group)
        self.timed = timed

    def received(self, message: dict[str, Any]) -> None:
        ended = message.get("ended_sessions") or []
        self._tell({key for key in ended if isinstance(key, str)})

    async def refreshed(self) -> None:
        if self.timed:
            self._tell(set())

    def _tell(self, ended_sessions: set[str]) -> None:
        for member in list(self.members):
            member.access_changed(ended_sessions)


# Per event loop (one per server process; tests run several loops one after another).
_listeners: dict[tuple[int, str], GroupListener] = {}


def hub_for(stream: Stream) -> StreamHub:
    # By the stream's key, not its group: members who may see different events of one
    # project share the group but not the hub's cached events.
    key = (id(asyncio.get_running_loop()), f"stream:{stream.key}")
    hub = _listeners.get(key)
    if hub is None:
        hub = _listeners[key] = StreamHub(stream)
    assert isinstance(hub, StreamHub)
    return hub


def watch_for(group: str, *, timed: bool) -> AccessWatch:
    key = (id(asyncio.get_running_loop()), group)
    watch = _listeners.get(key)
    if watch is None:
        watch = _listeners[key] = AccessWatch(group, timed=timed)
    assert isinstance(watch, AccessWatch)
    return watch


def listener_forget(listener: GroupListener) -> None:
    for key, value in list(_listeners.items()):
        if value is listener:
            del _listeners[key]


class EventStreamConsumer(AsyncWebsocketConsumer):
    """One socket following one project's or ticket's events; `kind` says which."""

    kind = "project"
    # The stream's hub listens on the channel layer for all of this process's sockets; a
    # socket of its own would only add a receive loop (a poller on the embedded layer).
    channel_layer_alias = "live-sockets-use-their-stream-hub"
    stream: Stream | None = None
    hub: StreamHub | None = None
    last_seq = 0
    notified = 0
    batched = False
    drainer: asyncio.Task[None] | None = None
    watches: tuple[AccessWatch, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks: set[asyncio.Task[None]] = set()
        self.pending: set[str] | None = None  # ended sessions of a check about to run
        # One sender at a time per socket: the backlog, a catch-up in `_drain`, the hub's
        # pass (`send_now`), or an access check closing the socket.
        self.sending = asyncio.Lock()

    async def connect(self) -> None:
        query = parse_query(self.scope.get("query_string", b""))
        if query is None:
            await self.refuse(CloseCode.BAD_REQUEST)
            return
        after, self.batched = query.after, query.batched
        kwargs = self.scope["url_route"]["kwargs"]
        decision = await database_sync_to_async(resolve_stream)(
            user=self.scope.get("user"), org_slug=kwargs["org"], kind=self.kind,
            key=kwargs["key"], session=self.scope.get("session"))
        if isinstance(decision, CloseCode):
            await self.refuse(decision)
            return
        self.stream = decision
        self.last_seq = after
        async with self.sending:
            # Join before reading the backlog: an event committed meanwhile is either in the
            # backlog or announced afterwards (and then skipped when already sent).
            self.hub = hub_for(decision)
            await self.hub.join(self)
            user = self.scope["user"]
            self.watches = (watch_for(live.user_group(user.pk), timed=True),
                            watch_for(live.organization_group(decision.organization_id),
                                      timed=False))
            for watch in self.watches:
                await watch.join(self)
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
        await self.stop_following()
        if self.drainer is not None:
            self.drainer.cancel()
        for check in list(self.checks):
            if check is not asyncio.current_task():
                check.cancel()

    async def stop_following(self) -> None:
        """Leave the stream's hub and the access watches; nothing more is sent after this."""
        if self.hub is not None:
            hub, self.hub = self.hub, None
            if await hub.leave(self):
                listener_forget(hub)
        watches, self.watches = self.watches, ()
        for watch in watches:
            if await watch.leave(self):
                listener_forget(watch)

    def access_changed(self, ended_sessions: set[str]) -> None:
        """The user's or organization's access may have shrunk: check again, close if so.
        A check not yet started takes the new ended sessions instead of a second check."""
        if self.pending is not None:
            self.pending |= ended_sessions
            return
        self.pending = set(ended_sessions)
        check = asyncio.ensure_future(self._check_access())
        self.checks.add(check)  # held until done (the loop keeps only weak references)
        check.add_done_callback(self.checks.discard)

    async def _check_access(self) -> None:
        ended_sessions, self.pending = self.pending or set(), None
        try:
            session = self.scope.get("session")
            session_key = getattr(session, "session_key", None)
            if session_key is None or session_key in ended_sessions:
                code: CloseCode | None = CloseCode.FORBIDDEN
            else:
                code = await self.access_lost(session_key)
        except Exception:
            logger.exception("live: checking a socket's access failed; closing it")
            code = CloseCode.FORBIDDEN
        if code is None:
            return
        # Under the send lock: a catch-up already sending finishes its frame, then nothing
        # more goes out (the hub is left before the lock is released).
        async with self.sending:
            if self.hub is None:
                return
            await self.stop_following()
            await self.close(code=int(code))

    async def access_lost(self, session_key: str) -> CloseCode | None:
        """Why this socket may no longer stream, judged afresh; None while it still may."""
        session = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
        user = await get_user({"session": session})
        kwargs = self.scope["url_route"]["kwargs"]
        decision = await database_sync_to_async(resolve_stream)(
            user=user, org_slug=kwargs["org"], kind=self.kind, key=kwargs["key"],
            session=session)
        if isinstance(decision, CloseCode):
            return decision
        scoped = self.scope.get("user")
        if getattr(scoped, "pk", None) != user.pk:
            return CloseCode.FORBIDDEN  # the session now belongs to someone else
        return None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients only listen; what they send is ignored."""

    def wake(self, seq: int) -> None:
        """The hub heard of a committed event `seq` of this stream."""
        if seq <= max(self.last_seq, self.notified):
            return  # already sent, or already on its way
        self.notified = seq
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            async with self.sending:
                while self.hub is not None and self.notified > self.last_seq:
                    await self.catch_up(self.notified)
        except Exception:
            await self._send_failed()

    async def catch_up(self, notified: int) -> None:
        """Send every event after `last_seq`, at least up to `notified`, in order."""
        assert self.stream is not None and self.hub is not None
        frames = await self.hub.after(self.last_seq, notified)
        if frames is not None:
            await self.send_frames(frames)
            return
        while True:
            page = await database_sync_to_async(self.stream.frames)(self.last_seq, PAGE)
            await self.send_frames(page)
            if len(page) < PAGE:
                return

    async def send_frames(self, frames: list[Frame]) -> None:
        start = 0
        while start < len(frames) and frames[start][0] <= self.last_seq:
            start += 1
        if start < len(frames):
            for text in messages(frames[start:], batched=self.batched):
                await self.send(text_data=text)
            self.last_seq = frames[-1][0]

    async def _send_failed(self) -> None:
        logger.exception("live: sending to a socket of %s failed",
                         self.stream.group if self.stream else "?")
        await self.close()

    async def send_now(self, texts: list[str], up_to: int) -> None:
        """Send the hub's messages, which carry every event after this socket's `last_seq`
        up to `up_to` (the hub found the socket idle; taking its lock does not wait)."""
        try:
            async with self.sending:
                if self.hub is None or self.last_seq >= up_to:
                    return
                for text in texts:
                    await self.send(text_data=text)
                self.last_seq = up_to
        except Exception:
            await self._send_failed()


class ProjectEventsConsumer(EventStreamConsumer):
    kind = "project"


class TicketEventsConsumer(EventStreamConsumer):
    kind = "ticket"

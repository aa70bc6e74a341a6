"""Live event streams over WebSockets: backlog, then live events in order, resumable, refused
to whoever may not read them; on the embedded channel layer and on Redis alike."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.staticfiles import finders
from django.db import connection, transaction
from django.test import Client

from haao.asgi import application
from haao.audit import Actor, audit_record
from haao.channel_layer import SQLiteChannelLayer
from haao.models import AuditEvent
from tests.factories import MembershipFactory, TicketFactory
from tests.fixtures import token_client
from tickets import consumers, live
from tickets import services as ticket_services

pytestmark = pytest.mark.django_db(transaction=True)

REST_FIELDS = {"seq", "created_at", "type", "actor_type", "actor_label", "target_type",
               "target_label", "data"}
PAY = "/ws/o/acme/projects/PAY/events/"
TIMEOUT = 5
PER_TRANSACTION = 4


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await scenario()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return async_to_sync(main)()
    # A browser test earlier in the session left Playwright's event loop running in this
    # thread (pytest-playwright's session fixture): the scenario gets a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(async_to_sync(main)).result()


def headers_for(user: Any | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", settings.BASE_URL.encode())]
    if user is not None:
        client = Client()
        client.force_login(user)
        name = settings.SESSION_COOKIE_NAME
        headers.append((b"cookie", f"{name}={client.cookies[name].value}".encode()))
    return headers


def record(cast: Any, count: int, *, project: Any = None, target: Any = None,
           start: int = 0, per_transaction: int = 1) -> None:
    """`count` events of the project (or of `target`), committed `per_transaction` at a time."""
    project = project or cast.project
    for first in range(start, start + count, per_transaction):
        with transaction.atomic():
            for n in range(first, min(first + per_transaction, start + count)):
                audit_record(organization=cast.org, actor=Actor.of(cast.admin),
                             type="test.step", target=target or project, data={"n": n},
                             project_id=project.pk)


async def open_stream(path: str, headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


def events_in(message: dict) -> list[dict]:
    """The events a message carries: one (`event`), or several (`events`, batched sockets)."""
    if message["type"] == "event":
        return [message["event"]]
    assert message["type"] == "events" and message["events"], message
    return list(message["events"])


async def read_until_caught_up(communicator: WebsocketCommunicator) -> tuple[list[dict], int]:
    events = []
    while True:
        message = await communicator.receive_json_from(timeout=TIMEOUT)
        if message["type"] == "caught_up":
            return events, message["seq"]
        events.extend(events_in(message))


async def close_code(path: str, headers: list[tuple[bytes, bytes]]) -> int:
    communicator = await open_stream(path, headers)
    output = await communicator.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.close", output
    await communicator.disconnect()
    return int(output["code"])


def grant_view(cast: Any, user: Any) -> None:
    ticket_services.project_grant_set(organization=cast.org, project=cast.project, user=user,
                                      grants={"view"}, actor=cast.admin)


def test_a_member_gets_the_backlog_then_a_live_event_with_the_rest_fields(cast) -> None:
    grant_view(cast, cast.member)
    record(cast, 3)

    headers_member = headers_for(cast.member)

    async def scenario() -> tuple[list[dict], int, list[dict]]:
        communicator = await open_stream(PAY, headers_member)
        backlog, caught_up = await read_until_caught_up(communicator)
        await database_sync_to_async(record)(cast, 1, start=3)
        live_event = await communicator.receive_json_from(timeout=TIMEOUT)
        await communicator.disconnect()
        return backlog, caught_up, [live_event]

    backlog, caught_up, (live_message,) = run(scenario)
    assert live_message["type"] == "event"
    received = [*backlog, live_message["event"]]
    assert [event["data"]["n"] for event in received] == [0, 1, 2, 3]
    assert caught_up == backlog[-1]["seq"]
    assert all(set(event) == REST_FIELDS for event in received)
    # Exactly what the REST endpoint says about the same events.
    rest = token_client(cast.org, cast.admin, ["read"]).get(
        "/api/v1/orgs/acme/projects/PAY/events/").json()["results"]
    assert received == [event for event in rest if event["type"] == "test.step"]


def test_resuming_after_a_seq_sends_only_later_events(cast) -> None:
    record(cast, 5)
    seqs = list(AuditEvent.objects.filter(type="test.step").order_by("seq")
                .values_list("seq", flat=True))

    headers_admin = headers_for(cast.admin)

    async def scenario() -> tuple[list[dict], int]:
        communicator = await open_stream(f"{PAY}?after={seqs[2]}", headers_admin)
        result = await read_until_caught_up(communicator)
        await communicator.disconnect()
        return result

    events, caught_up = run(scenario)
    assert [event["seq"] for event in events] == seqs[3:]
    assert caught_up == seqs[-1]


def test_with_nothing_new_caught_up_repeats_the_given_seq(cast) -> None:
    headers_admin = headers_for(cast.admin)

    async def scenario() -> tuple[list[dict], int]:
        communicator = await open_stream(f"{PAY}?after=12345", headers_admin)
        result = await read_until_caught_up(communicator)
        await communicator.disconnect()
        return result

    assert run(scenario) == ([], 12345)


def test_a_ticket_stream_gets_its_tickets_events_live_and_nothing_else(cast) -> None:
    ticket = TicketFactory(project=cast.project, requirement__project=cast.project, number=7)

    headers_manager = headers_for(cast.manager)

    async def scenario() -> list[dict]:
        communicator = await open_stream("/ws/o/acme/tickets/PAY-7/events/",
                                         headers_manager)
        assert await read_until_caught_up(communicator) == ([], 0)
        await database_sync_to_async(record)(cast, 2)  # the project's, not the ticket's
        await database_sync_to_async(record)(cast, 1, target=ticket, start=2)
        event = await communicator.receive_json_from(timeout=TIMEOUT)
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return [event]

    (message,) = run(scenario)
    assert message["event"]["data"] == {"n": 2}
    assert message["event"]["target_type"] == "tickets.ticket"


def test_every_socket_of_a_project_gets_each_live_event_once(cast) -> None:
    headers = [headers_for(user) for user in (cast.admin, cast.manager, cast.admin)]

    async def scenario() -> list[list[int]]:
        sockets = [await open_stream(PAY, each) for each in headers]
        for socket in sockets:
            await read_until_caught_up(socket)
        await database_sync_to_async(record)(cast, 3, per_transaction=3)
        await database_sync_to_async(record)(cast, 2, start=3)
        received = []
        for socket in sockets:
            received.append([(await socket.receive_json_from(timeout=TIMEOUT))["event"]
                             ["data"]["n"] for _ in range(5)])
            assert await socket.receive_nothing(timeout=0.2)
        for socket in sockets:
            await socket.disconnect()
        return received

    assert run(scenario) == [[0, 1, 2, 3, 4]] * 3


def test_a_batched_socket_gets_its_backlog_and_each_commits_events_as_one_message(cast) -> None:
    record(cast, 3)
    headers = headers_for(cast.admin)

    async def scenario() -> tuple[list[dict], list[dict], list[dict]]:
        batched = await open_stream(f"{PAY}?after=0&batch=1", headers)
        plain = await open_stream(PAY, headers)  # the same hub, one message per event
        backlog = await batched.receive_json_from(timeout=TIMEOUT)
        assert (await batched.receive_json_from(timeout=TIMEOUT))["type"] == "caught_up"
        await read_until_caught_up(plain)
        live_messages = []
        for start, count in ((3, 4), (7, 1)):  # each commit received before the next
            await database_sync_to_async(record)(cast, count, start=start,
                                                 per_transaction=count)
            live_messages.append(await batched.receive_json_from(timeout=TIMEOUT))
        assert await batched.receive_nothing(timeout=0.3)
        singles = [await plain.receive_json_from(timeout=TIMEOUT) for _ in range(5)]
        assert await plain.receive_nothing(timeout=0.3)
        for socket in (batched, plain):
            await socket.disconnect()
        return [backlog], live_messages, singles

    backlog, live_messages, singles = run(scenario)
    # One message for the backlog, one for the four events of one commit, one for the last.
    assert [message["type"] for message in backlog + live_messages] == ["events"] * 3
    assert [[event["data"]["n"] for event in events_in(message)]
            for message in backlog + live_messages] == [[0, 1, 2], [3, 4, 5, 6], [7]]
    assert [message["type"] for message in singles] == ["event"] * 5
    # The same events either way, as the REST endpoint shows them.
    rest = token_client(cast.org, cast.admin, ["read"]).get(
        "/api/v1/orgs/acme/projects/PAY/events/").json()["results"]
    steps = [event for event in rest if event["type"] == "test.step"]
    assert [event for message in backlog + live_messages for event in events_in(message)] \
        == steps
    assert [message["event"] for message in singles] == steps[3:]


class LostNotifier:
    def notify(self, groups: list[str], seq: int) -> None:
        pass


def test_an_event_whose_notification_was_lost_still_arrives(cast, monkeypatch) -> None:
    monkeypatch.setattr(live, "notifier", lambda: LostNotifier())  # the layer lost it
    monkeypatch.setattr(consumers, "SAFETY_SECONDS", 0.2)
    headers = headers_for(cast.admin)

    async def scenario() -> dict:
        communicator = await open_stream(PAY, headers)
        await read_until_caught_up(communicator)
        await database_sync_to_async(record)(cast, 1)
        message = await communicator.receive_json_from(timeout=TIMEOUT)
        await communicator.disconnect()
        return message

    assert run(scenario)["event"]["data"] == {"n": 0}


def shares_threads() -> bool:
    """Whether another thread may write while sockets read (not the in-memory SQLite test
    database: its shared cache locks whole tables and fails readers at once)."""
    return not (connection.vendor == "sqlite" and connection.is_in_memory_db())


@pytest.mark.parametrize("batch", ["", "&batch=1"], ids=["per-event", "batched"])
def test_a_thousand_events_arrive_once_each_in_order_across_a_dropped_socket(cast,
                                                                            batch) -> None:
    total = 1000
    # Services write a few events per transaction; a commit then announces all of them.
    writing_done = threading.Event()

    def writer() -> None:
        try:
            record(cast, total, per_transaction=PER_TRANSACTION)
        finally:
            connection.close()
            writing_done.set()

    async def write_between_reads() -> None:
        # One committed transaction per event on the consumers' database thread, interleaved
        # with their reads; notifications still cross the notifier thread and the layer.
        for n in range(0, total, PER_TRANSACTION):
            await database_sync_to_async(record)(cast, PER_TRANSACTION, start=n,
                                                 per_transaction=PER_TRANSACTION)
        writing_done.set()

    headers = headers_for(cast.admin)

    async def scenario() -> list[int]:
        received: list[int] = []
        communicator = await open_stream(f"{PAY}?after=0{batch}", headers)
        await read_until_caught_up(communicator)
        if shares_threads():
            thread = threading.Thread(target=writer)
            thread.start()
            done: Any = asyncio.to_thread(thread.join, 60)
        else:
            done = asyncio.ensure_future(write_between_reads())
        while len(received) < total // 2:
            message = await communicator.receive_json_from(timeout=TIMEOUT)
            if message["type"] != "caught_up":
                received.extend(event["seq"] for event in events_in(message))
        await communicator.disconnect()  # the socket drops mid-stream; the writer goes on
        communicator = await open_stream(f"{PAY}?after={received[-1]}{batch}", headers)
        while len(received) < total:
            message = await communicator.receive_json_from(timeout=TIMEOUT)
            if message["type"] != "caught_up":
                received.extend(event["seq"] for event in events_in(message))
        await done
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return received

    received = run(scenario)
    assert writing_done.is_set()
    written = list(AuditEvent.objects.filter(project_id=cast.project.pk, type="test.step")
                   .order_by("seq").values_list("seq", flat=True))
    assert len(written) == total
    assert received == written  # 0 gaps, 0 duplicates, in order


def test_an_anonymous_visitor_is_refused(cast) -> None:
    headers = headers_for(None)
    assert run(lambda: close_code(PAY, headers)) == 4403


def test_a_member_without_access_to_a_project_cannot_tell_it_exists(cast) -> None:
    TicketFactory(project=cast.project, requirement__project=cast.project, number=1)
    headers = headers_for(cast.member)
    # Not allowed and not there answer alike.
    assert run(lambda: close_code(PAY, headers)) == 4404
    assert run(lambda: close_code("/ws/o/acme/projects/NOPE/events/", headers)) == 4404
    assert run(lambda: close_code("/ws/o/acme/tickets/PAY-1/events/", headers)) == 4404
    assert run(lambda: close_code("/ws/o/acme/tickets/PAY-9/events/", headers)) == 4404


def test_an_outsider_gets_not_found_as_for_an_organization_that_does_not_exist(cast) -> None:
    outsider = headers_for(cast.outsider)
    assert run(lambda: close_code(PAY, outsider)) == 4404
    assert run(lambda: close_code("/ws/o/nope/projects/PAY/events/", outsider)) == 4404


def test_another_organizations_ticket_or_project_key_is_not_found(cast) -> None:
    TicketFactory(project=cast.other_project, requirement__project=cast.other_project, number=1)
    admin = headers_for(cast.admin)
    assert run(lambda: close_code("/ws/o/acme/tickets/GLX-1/events/", admin)) == 4404
    assert run(lambda: close_code("/ws/o/acme/projects/GLX/events/", admin)) == 4404
    assert run(lambda: close_code("/ws/o/acme/projects/NOPE/events/", admin)) == 4404
    assert run(lambda: close_code("/ws/o/acme/tickets/pay-x/events/", admin)) == 4404


@pytest.mark.parametrize("after", ["-1", "abc", "1e3", "99999999999999999999", "1&after=2",
                                   "1&batch=2", "1&batch=yes", "1&batch=1&batch=1"])
def test_a_bad_after_or_batch_is_refused_as_a_bad_request(cast, after: str) -> None:
    headers = headers_for(cast.admin)
    assert run(lambda: close_code(f"{PAY}?after={after}", headers)) == 4400


def test_a_manager_can_follow_a_project_read_only(cast) -> None:
    record(cast, 1)

    headers_manager = headers_for(cast.manager)

    async def scenario() -> tuple[list[dict], int]:
        communicator = await open_stream(PAY, headers_manager)
        result = await read_until_caught_up(communicator)
        await communicator.disconnect()
        return result

    events, _ = run(scenario)
    assert [event["data"] for event in events] == [{"n": 0}]


def test_a_member_granted_the_project_and_a_product_owner_of_another_org_differ(cast) -> None:
    grant_view(cast, cast.member)
    stranger = MembershipFactory(organization=cast.other_org, role="product_owner").user
    headers = headers_for(stranger)
    assert run(lambda: close_code(PAY, headers)) == 4404

    headers_member = headers_for(cast.member)

    async def scenario() -> int:
        communicator = await open_stream(PAY, headers_member)
        _, seq = await read_until_caught_up(communicator)
        await communicator.disconnect()
        return seq

    assert run(scenario) == 0


def test_a_write_commits_even_when_the_channel_layer_is_down(cast, monkeypatch,
                                                             caplog) -> None:
    class Broken:
        async def group_send(self, group: str, message: dict) -> None:
            raise ConnectionError("channel layer down")

    monkeypatch.setattr("channels.layers.get_channel_layer", lambda *args: Broken())
    with caplog.at_level(logging.WARNING, logger="tickets.live"):
        record(cast, 2)
        assert live.notifier().flush()
    assert AuditEvent.objects.filter(type="test.step").count() == 2
    assert "channel layer down" in caplog.text


def test_an_event_notifies_its_project_and_its_tickets_group(cast) -> None:
    ticket = TicketFactory(project=cast.project, requirement__project=cast.project)
    event = audit_record(organization=cast.org, actor=Actor.of(cast.admin), type="test.step",
                         target=ticket, project_id=cast.project.pk)
    assert live.event_groups(event) == [f"events.project.{cast.project.pk.hex}",
                                        f"events.ticket.{ticket.pk.hex}"]


def test_the_browser_client_is_served_as_a_static_file() -> None:
    path = finders.find("js/live.js")
    assert path is not None
    text = Path(path).read_text()
    assert "window.HAAO.live = { subscribe: subscribe }" in text


def test_an_organization_that_requires_sso_streams_only_to_a_session_through_its_own_idp(
        cast) -> None:
    from accounts.assurance import session_record_sso
    from accounts.models import Organization

    Organization.objects.filter(pk=cast.org.pk).update(sso_required=True)
    cast.org.refresh_from_db()
    client = Client()
    client.force_login(cast.admin)
    name = settings.SESSION_COOKIE_NAME
    cookie = [(b"origin", settings.BASE_URL.encode()),
              (b"cookie", f"{name}={client.cookies[name].value}".encode())]
    # Signed in with a password: the organization's rule is not met.
    assert run(lambda: close_code(PAY, cookie)) == 4403
    session = client.session
    session_record_sso(session=session, user=cast.admin, organization=cast.other_org)
    session.save()
    assert run(lambda: close_code(PAY, cookie)) == 4403  # another organization's IdP
    session_record_sso(session=session, user=cast.admin, organization=cast.org)
    session.save()

    async def scenario() -> list[dict]:
        communicator = await open_stream(PAY, cookie)
        events, _ = await read_until_caught_up(communicator)
        await communicator.disconnect()
        return events

    assert run(scenario) is not None


def signed_in(user: Any) -> tuple[Client, list[tuple[bytes, bytes]]]:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return client, [(b"origin", settings.BASE_URL.encode()),
                    (b"cookie", f"{name}={client.cookies[name].value}".encode())]


def closed_after(cast: Any, headers: list[tuple[bytes, bytes]],
                 change: Callable[[], None]) -> int:
    """Open a stream, make `change`, then the close code the open socket receives."""
    async def scenario() -> int:
        communicator = await open_stream(PAY, headers)
        await read_until_caught_up(communicator)
        await database_sync_to_async(change)()
        output = await communicator.receive_output(timeout=TIMEOUT)
        while output["type"] == "websocket.send":  # events written by the change itself
            output = await communicator.receive_output(timeout=TIMEOUT)
        assert output["type"] == "websocket.close", output
        await communicator.disconnect()
        return int(output["code"])

    return run(scenario)


def test_an_open_socket_closes_when_the_members_project_grant_is_withdrawn(cast) -> None:
    grant_view(cast, cast.member)
    _, headers = signed_in(cast.member)

    def withdraw() -> None:
        ticket_services.project_grant_set(organization=cast.org, project=cast.project,
                                          user=cast.member, grants=set(), actor=cast.admin)

    assert closed_after(cast, headers, withdraw) == 4404


def test_an_open_socket_closes_when_the_member_is_removed_from_the_organization(cast) -> None:
    from accounts import services as account_services
    from accounts.models import Membership

    _, headers = signed_in(cast.manager)

    def remove() -> None:
        account_services.membership_remove(
            organization=cast.org, actor=cast.admin,
            membership=Membership.objects.get(organization=cast.org, user=cast.manager))

    assert closed_after(cast, headers, remove) == 4404


def test_an_open_socket_closes_when_its_session_signs_out(cast) -> None:
    client, headers = signed_in(cast.admin)

    def sign_out() -> None:
        assert client.post("/accounts/logout/").status_code == 302

    assert closed_after(cast, headers, sign_out) == 4403


def test_a_socket_stays_open_when_someone_elses_access_shrinks(cast) -> None:
    grant_view(cast, cast.member)
    _, headers = signed_in(cast.admin)
    member_client, _ = signed_in(cast.member)

    async def scenario() -> bool:
        communicator = await open_stream(PAY, headers)
        await read_until_caught_up(communicator)

        def others_lose_access() -> None:
            ticket_services.project_grant_set(organization=cast.org, project=cast.project,
                                              user=cast.member, grants=set(), actor=cast.admin)
            member_client.post("/accounts/logout/")
            record(cast, 1)

        await database_sync_to_async(others_lose_access)()
        received = []
        while not received or received[-1] != 0:  # the grant's event, then the step's
            message = await communicator.receive_json_from(timeout=TIMEOUT)
            received.append(message["event"]["data"].get("n", -1))
        # Then the socket stays open: nothing more comes, no close.
        stayed_open = await communicator.receive_nothing(timeout=1)
        await communicator.disconnect()
        return stayed_open

    assert run(scenario) is True


@pytest.mark.parametrize("origin", ["https://127.0.0.1:8000", "http://127.0.0.1:8001",
                                    "http://127.0.0.1", "http://evil.example"])
def test_a_socket_from_another_origin_is_refused_even_on_the_same_host(cast, settings,
                                                                      origin) -> None:
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["http://127.0.0.1:8000"]
    _, headers = signed_in(cast.admin)
    other = [(b"origin", origin.encode()), *headers[1:]]

    async def scenario() -> bool:
        communicator = WebsocketCommunicator(application, PAY, headers=other)
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        await communicator.disconnect()
        return connected

    assert run(scenario) is False


def test_a_socket_of_a_deactivated_account_closes_at_the_next_periodic_check(
        cast, monkeypatch) -> None:
    from accounts.models import User

    monkeypatch.setattr(consumers, "SAFETY_SECONDS", 0.2)
    _, headers = signed_in(cast.manager)

    def deactivate() -> None:  # no notification: only the periodic check can notice
        User.objects.filter(pk=cast.manager.pk).update(is_active=False)

    assert closed_after(cast, headers, deactivate) == 4403


class CancelTurnedIntoAnError(SQLiteChannelLayer):
    """A layer whose receive reports a cancel as an error of its own, as redis-py does with a
    cancel that meets its read timeout (channels_redis passes it on)."""

    async def receive(self, channel: str) -> dict[str, Any]:
        try:
            return await super().receive(channel)
        except asyncio.CancelledError:
            raise TimeoutError("Timeout reading from 127.0.0.1:6379") from None


def listener_stops_when_its_last_socket_leaves(layer: Any, monkeypatch: Any) -> bool:
    """Whether a group's listener on `layer` ends within 3 s of its only socket leaving."""
    monkeypatch.setattr(consumers, "get_channel_layer", lambda: layer)
    socket = object()

    async def scenario() -> bool:
        watch = consumers.AccessWatch("access.user.1", timed=False)
        await watch.join(socket)  # type: ignore[arg-type]
        listener = watch.listener
        assert listener is not None
        await asyncio.sleep(0.1)  # the listener waits in the layer's receive
        assert await watch.leave(socket)  # type: ignore[arg-type]
        done, _ = await asyncio.wait([listener], timeout=3)
        return bool(done)

    return run(scenario)


def test_a_listener_whose_layer_swallows_its_cancel_still_stops_when_its_last_socket_leaves(
        tmp_path, monkeypatch) -> None:
    layer = CancelTurnedIntoAnError(path=str(tmp_path / "channels.sqlite3"))
    assert listener_stops_when_its_last_socket_leaves(layer, monkeypatch), \
        "the listener of a group nobody follows kept receiving"


@pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis layer needs a Redis server "
                    "(scripts/test.sh starts one)")
def test_an_idle_listener_on_redis_waits_quietly_and_still_gets_the_next_message(
        caplog, monkeypatch) -> None:
    """redis-py gives up on a read after 5 s: a listener with nothing to receive must not
    fail (log, drop its connection) every 5 s, and must still get what comes next."""
    from channels.layers import get_channel_layer

    # The configured layer, a new instance: its locks and pools belong to this event loop.
    layer = type(get_channel_layer())(hosts=[settings.REDIS_URL])
    monkeypatch.setattr(consumers, "get_channel_layer", lambda: layer)
    socket = object()
    received: list[dict[str, Any]] = []

    async def scenario() -> None:
        watch = consumers.AccessWatch("access.user.idle-test", timed=False)
        watch.received = received.append  # type: ignore[method-assign]
        await watch.join(socket)  # type: ignore[arg-type]
        try:
            await asyncio.sleep(6.5)  # longer than redis-py's read timeout
            await layer.group_send("access.user.idle-test", {"type": "access.changed"})
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.05)
        finally:
            await watch.leave(socket)  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="tickets.consumers"):
        run(scenario)
    assert [r.getMessage() for r in caplog.records if "receiving on" in r.getMessage()] == []
    assert received == [{"type": "access.changed"}]


class CancelSwallowedOnce(SQLiteChannelLayer):
    """A layer whose receive swallows the first cancel and goes on waiting, as a client that
    retries a read whose timeout met the cancel does."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.swallowed = 0

    async def receive(self, channel: str) -> dict[str, Any]:
        while True:
            try:
                return await super().receive(channel)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1


def test_a_listener_whose_layer_swallows_a_cancel_and_waits_on_is_stopped_all_the_same(
        tmp_path, monkeypatch) -> None:
    layer = CancelSwallowedOnce(path=str(tmp_path / "channels.sqlite3"))
    assert listener_stops_when_its_last_socket_leaves(layer, monkeypatch), \
        "the listener of a group nobody follows kept receiving"
    assert layer.swallowed == 1

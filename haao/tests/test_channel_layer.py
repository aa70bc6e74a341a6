"""The embedded channel layer delivers across processes, like Redis does in production."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.exceptions import ChannelFull

from haao.channel_layer import SQLiteChannelLayer


@pytest.fixture
def layer(tmp_path) -> SQLiteChannelLayer:
    return SQLiteChannelLayer(path=str(tmp_path / "channels.sqlite3"), capacity=3)


def run(coroutine):
    # A thread of its own: browser tests in the same session keep an event loop running here.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_a_message_sent_to_a_channel_is_received_once(layer) -> None:
    async def scenario() -> tuple[dict, bool]:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "hello", "n": 1})
        first = await layer.receive(channel)
        try:
            await asyncio.wait_for(layer.receive(channel), 0.2)
        except TimeoutError:
            return first, False
        return first, True

    message, received_twice = run(scenario())
    assert message == {"type": "hello", "n": 1} and not received_twice


def test_group_send_reaches_members_only_and_discard_stops_it(layer) -> None:
    async def scenario() -> list[object]:
        inside, outside = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("project.abc", inside)
        await layer.group_send("project.abc", {"type": "event", "seq": 7})
        got = await asyncio.wait_for(layer.receive(inside), 2)
        results: list[object] = [got]
        for channel in (outside,):
            try:
                await asyncio.wait_for(layer.receive(channel), 0.2)
                results.append("outside received")
            except TimeoutError:
                results.append("outside silent")
        await layer.group_discard("project.abc", inside)
        await layer.group_send("project.abc", {"type": "event", "seq": 8})
        try:
            await asyncio.wait_for(layer.receive(inside), 0.2)
            results.append("received after discard")
        except TimeoutError:
            results.append("silent after discard")
        return results

    assert run(scenario()) == [{"type": "event", "seq": 7}, "outside silent",
                               "silent after discard"]


def test_a_full_channel_refuses_more(layer) -> None:
    async def scenario() -> None:
        channel = await layer.new_channel()
        for n in range(3):
            await layer.send(channel, {"type": "x", "n": n})
        await layer.send(channel, {"type": "x", "n": 99})

    with pytest.raises(ChannelFull):
        run(scenario())


def test_messages_expire(tmp_path) -> None:
    layer = SQLiteChannelLayer(path=str(tmp_path / "c.sqlite3"), expiry=0)

    async def scenario() -> bool:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "stale"})
        try:
            await asyncio.wait_for(layer.receive(channel), 0.2)
        except TimeoutError:
            return False
        return True

    assert run(scenario()) is False


def test_another_process_reaches_this_process_through_a_group(tmp_path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    layer = SQLiteChannelLayer(path=path)
    sender = textwrap.dedent(f"""
        import asyncio
        from haao.channel_layer import SQLiteChannelLayer
        layer = SQLiteChannelLayer(path={path!r})
        asyncio.run(layer.group_send("ticket.42", {{"type": "event", "from": "worker"}}))
    """)

    async def scenario() -> dict:
        channel = await layer.new_channel()
        await layer.group_add("ticket.42", channel)
        await asyncio.to_thread(subprocess.run, [sys.executable, "-c", sender], check=True,
                                timeout=60)
        return await asyncio.wait_for(layer.receive(channel), 5)

    assert run(scenario()) == {"type": "event", "from": "worker"}

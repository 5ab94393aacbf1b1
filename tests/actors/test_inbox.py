"""actors._inbox.with_waiting: what already waits is taken, up to a message count, never waiting."""

from __future__ import annotations

import msgpack
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._inbox import item_length, with_waiting


def batch(n: int) -> bytes:
    data: bytes = msgpack.packb(list(range(n)))
    return data


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(1, 200))
def test_takes_waiting_items_in_order_until_the_limit(sizes: list[int], limit: int) -> None:
    async def main() -> None:
        send, receive = trio.open_memory_channel[bytes](len(sizes))
        for n in sizes[1:]:
            send.send_nowait(batch(n))
        items = with_waiting(receive, batch(sizes[0]), limit)
        taken = [item_length(i) for i in items]
        assert taken == sizes[:len(taken)]  # in order, nothing skipped
        assert sum(taken[:-1]) < limit  # stopped at the first item that reached the limit
        if len(taken) < len(sizes):
            assert sum(taken) >= limit
        unlimited = with_waiting(receive, batch(0))
        assert [item_length(i) for i in unlimited] == [0, *sizes[len(taken):]]

    trio.run(main)


async def test_an_empty_or_closed_inbox_gives_the_first_item_alone() -> None:
    send, receive = trio.open_memory_channel[bytes](4)
    assert with_waiting(receive, b"x", 10) == [b"x"]
    await send.aclose()
    assert with_waiting(receive, b"y") == [b"y"]


def test_a_channel_that_cannot_be_read_without_waiting_gives_the_first_item() -> None:
    class Stream(trio.abc.ReceiveChannel[bytes]):
        async def receive(self) -> bytes:  # pragma: no cover - never called
            raise AssertionError

        async def aclose(self) -> None:  # pragma: no cover
            pass

    assert with_waiting(Stream(), b"a", 5) == [b"a"]


def test_an_item_that_is_not_an_array_counts_one() -> None:
    assert item_length(b"\xc0") == 1
    assert item_length(batch(20)) == 20

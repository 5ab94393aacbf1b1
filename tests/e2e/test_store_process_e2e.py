"""2,000 messages through the real actors with the pipeline's writes in the writer process
(``[store] writer = "process"``): the scripts, expectations and carriers of
test_pipeline_e2e, every final state and event history checked. Callbacks through the real
notifier with the callback outbox's writes in the writer process."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio

from actors import messages, notifier
from actors.callbacks_policy import RetryPolicy
from bench.callbacks import Receiver, serve_receiver
from gateway.callback_outbox import CallbackOutbox
from gateway.callbacks import open_callback_sender
from tests.e2e.test_pipeline_e2e import scripted_run
from tests.gateway.test_callbacks_e2e import SECRET, Flaky, check_received, make_events
from tests.gateway.test_store_process import process_pipeline

N = 2_000


async def test_2000_messages_reach_their_final_state_through_the_writer_process(
        tmp_path: Path) -> None:
    async with scripted_run(tmp_path, N, 250, writer="process", deadline=60) as run:
        store, pipe = run.store, run.pipe
        assert pipe.statistics().writer.commits > 0
        assert store.stats.ops_cpu_seconds < pipe.statistics().writer.ops_cpu_seconds
        assert store.entries(b"outbox") == 0
        assert store.entries(b"inflight") == 0
        assert store.entries(b"orphans") == 0
        assert run.wrong_histories() == []
    hexa, dup = run.carriers
    assert hexa.duplicates() == 0 and dup.duplicates() == 0
    assert run.gw.correlator_stats.orphans_matched > 0
    assert run.gw.correlator_stats.unknown == 0 and run.gw.correlator_stats.illegal == 0


async def test_callbacks_through_the_writer_process_arrive_exactly_once_in_order(
        tmp_path: Path) -> None:
    """The real notifier, httpx sender and a flaky receiver on 127.0.0.1, the callback outbox's
    enqueue and settle in the writer process (``CallbackOutbox(store, writes=pipe)``): every
    status arrives once, in ascending seq per message, with retries on the way; none of those
    writes ran on the gateway's writer thread."""
    flaky = Flaky()
    receiver = Receiver(respond=flaky)
    policy = RetryPolicy(initial_delay=0.02, max_delay=0.2, request_timeout=1.0, per_endpoint=4,
                         breaker_failures=8, breaker_cooldown=0.1, breaker_max_cooldown=0.2,
                         batch_size=25)
    stats = notifier.NotifierStats()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_receiver, receiver)
        events = make_events(60, f"http://127.0.0.1:{port}/hook")
        async with process_pipeline(tmp_path / "db") as (store, pipe), \
                open_callback_sender(allow_loopback=True) as sender:
            send, recv = trio.open_memory_channel[bytes](4)
            await nursery.start(partial(
                notifier.run, recv, outbox=CallbackOutbox(store, writes=pipe), sender=sender,
                policy=policy, endpoint_for=lambda e: (e.callback_url, SECRET), stats=stats))
            async with send:
                for i in range(0, len(events), 40):
                    await send.send(messages.encode_batch(events[i:i + 40]))
                with trio.fail_after(30):
                    while stats.delivered < len(events):
                        await trio.sleep(0.02)
            assert CallbackOutbox(store).pending_count() == 0
            assert pipe.statistics().writer.ops > 0
            assert store.stats.commits == pipe.statistics().writer.commits  # none on the thread
        nursery.cancel_scope.cancel()
    receiver.requests = [r for r, s in zip(receiver.requests, [s for s in flaky.answered if s],
                                           strict=True) if s == 200]
    check_received(receiver, events)
    assert stats.retried > 0 and stats.dead == 0

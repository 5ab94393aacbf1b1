"""The simulator's trio driver: a real SMPP server on a TCP port, one task pair per connection.

All protocol decisions live in ``machine.SmscSession``; this module only moves bytes and
sleeps until the machine's next deadline. Must not import gateway or actors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import trio

from adapters._doorbell import Doorbell
from adapters.simulator.config import SimulatorConfig, SimulatorState, SimulatorStats
from adapters.simulator.machine import SmscSession

logger = logging.getLogger(__name__)

READ_SIZE = 256 * 1024


async def serve_simulator(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    stats: SimulatorStats | None = None,
    wall: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve SMPP on ``host:port`` until cancelled; ``task_status.started(bound_port)``.

    Args:
        config: the simulated SMSC's behaviour.
        stats: counters to update (pass one in to read them from a test); a new one if None.
        wall: the wall clock used for receipt dates.
    """
    shared = SimulatorState(config, stats if stats is not None else SimulatorStats(), wall)
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=128)
    bound = listeners[0].socket.getsockname()[1]
    logger.info("simulator listening on %s:%s", host, bound)
    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(partial(_connection, shared), listeners,
                                   handler_nursery=nursery)


class _Bell(Doorbell):
    """The writer's doorbell, knowing until when the writer sleeps: the reader rings it only
    when the session has work due before that (a ring per read woke the writer for nothing
    at every read)."""

    __slots__ = ("sleeping_until",)

    def __init__(self) -> None:
        super().__init__()
        self.sleeping_until = float("-inf")  # -inf: awake, it looks at the session itself


async def _connection(shared: SimulatorState, stream: trio.SocketStream) -> None:
    session = SmscSession(shared, now=trio.current_time())
    bell = _Bell()
    lock = trio.StrictFIFOLock()
    try:
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(_write_loop, session, stream, bell, lock, nursery.cancel_scope,
                               shared)
            await _read_loop(session, stream, bell, lock, shared)
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the ESME went away; its unanswered PDUs are its problem (in doubt)
    finally:
        session.connection_lost()  # its receipts wait for the next bind


async def _read_loop(session: SmscSession, stream: trio.SocketStream, bell: _Bell,
                     lock: trio.StrictFIFOLock, shared: SimulatorState) -> None:
    while True:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            return
        now = trio.current_time()
        shared.stats.reads += 1
        session.receive_data(data, now)
        if session.drop:
            return
        # Answer in the same pass (one write for everything due): no hop through the writer.
        out = session.poll(now)
        if out:
            shared.stats.writes += 1
            async with lock:
                await stream.send_all(out)
        if session.closing:
            return
        if session.next_deadline() < bell.sleeping_until:
            bell.ring()  # new timed work (delayed answers, receipts) is due earlier


async def _write_loop(session: SmscSession, stream: trio.SocketStream, bell: _Bell,
                      lock: trio.StrictFIFOLock, scope: trio.CancelScope,
                      shared: SimulatorState) -> None:
    while True:
        bell.sleeping_until = session.next_deadline()
        try:
            await bell.wait_until(bell.sleeping_until)
        finally:
            bell.sleeping_until = float("-inf")
        if session.drop:
            scope.cancel()
            return
        data = session.poll(trio.current_time())
        if data:
            shared.stats.writes += 1
            async with lock:
                await stream.send_all(data)
        if session.closing:
            scope.cancel()
            return

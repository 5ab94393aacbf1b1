"""One SMPP connection's socket-side lifecycle: the ``Link``, binding it and saying goodbye.

A ``Link`` pairs an ``EsmeSession`` with its trio stream, the bell that wakes its writer and
the lock that keeps writes whole. ``bind`` sends bind_* and reads until bind_resp (§4.1);
``goodbye`` lets the window drain and unbinds (§4.2), shielded and bounded. What the session
reports while draining goes to the caller's ``Handler`` (the client's ``_handle``), so the
outcome of every part is decided in one place. Reconnecting with back-off stays in ``client``.

Must not import: gateway, any actor module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from adapters._doorbell import Doorbell
from adapters.errors import LocalProtocolViolation, RemoteProtocolViolation
from adapters.smpp import pdu as p
from adapters.smpp import status as st
from adapters.smpp._fast import ReceiptFields
from adapters.smpp.session import BindFailed, Bound, Closed, EsmeSession, Event, State

logger = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
NETWORK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                  RemoteProtocolViolation)


class Link:
    """One connection: its session, socket, wake-up bell and write lock."""

    __slots__ = ("bell", "close_reason", "send_lock", "session", "stream")

    def __init__(self, session: EsmeSession, stream: trio.SocketStream) -> None:
        self.session = session
        self.stream = stream
        self.bell = Doorbell()
        self.send_lock = trio.StrictFIFOLock()
        self.close_reason = "closed by the SMSC"

    async def send(self, data: bytes) -> None:
        async with self.send_lock:
            await self.stream.send_all(data)


# Applies session events to the carrier; returns True when the session closed.
Handler = Callable[[Link, list[Event], float, "list[p.DeliverSm | ReceiptFields] | None"], bool]


async def bind(link: Link, *, name: str, mode: p.BindMode, system_id: str, password: str,
               system_type: str, response_timeout: float) -> list[Event] | None:
    """Bind; returns the events that came after ``bind_resp`` in the same read (an SMSC
    sends receipts it held for us right after it: they are ours to acknowledge), or None
    when the bind is refused."""
    session = link.session
    session.bind(mode, system_id, password, now=trio.current_time(), system_type=system_type)
    await link.send(session.data_to_send())
    with trio.fail_after(response_timeout):
        while True:
            data = await link.stream.receive_some(READ_SIZE)
            if not data:
                raise trio.BrokenResourceError("closed during bind")
            events = session.receive_data(data, trio.current_time())
            for i, event in enumerate(events):
                if isinstance(event, Bound):
                    return events[i + 1:]
                if isinstance(event, BindFailed):
                    logger.error("smpp %s: bind refused: %s", name, st.name(event.status),
                                 extra={"carrier": name})
                    return None
                if isinstance(event, Closed):
                    raise trio.BrokenResourceError(event.reason)


async def goodbye(link: Link, handle: Handler) -> None:
    """On shutdown: let the window drain, then unbind (§4.2); bounded and shielded."""
    session = link.session
    if not session.bound:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await link.send(session.data_to_send())
            if session.in_flight:
                await _drain(link, lambda: session.in_flight > 0, handle)
            session.unbind(now=trio.current_time())
            await link.send(session.data_to_send())
            await _drain(link, lambda: session.state is State.UNBINDING, handle)
        except (*NETWORK_ERRORS, LocalProtocolViolation):
            pass


async def _drain(link: Link, condition: Callable[[], bool], handle: Handler) -> None:
    while condition():
        data = await link.stream.receive_some(READ_SIZE)
        if not data:
            return
        now = trio.current_time()
        handle(link, link.session.receive_data(data, now), now, None)

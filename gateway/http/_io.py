"""Socket I/O of the HTTP server's connections: receive, send, linger, and the per-connection
deadline the watchdog enforces (:class:`Timer`).

Must not import: gateway.api, gateway.http.server.
"""

from __future__ import annotations

import math
import os
from typing import Final

import trio

RECEIVE_SIZE: Final = 65536

# Socket I/O of the request loop, on the connection's file descriptor. trio's
# SocketStream.receive_some + send_all cost ~14.6 µs per exchange here (two checkpoints each,
# a first recv attempt, error translation); reading/writing the non-blocking descriptor and
# waiting with trio.lowlevel.wait_readable/wait_writable only when it would block costs ~1–5 µs.
# Cancellation is unchanged (the waits are checkpoints); a read that did not wait still
# yields once, so a client that floods one connection cannot starve the others.


async def receive(fd: int) -> bytes:
    """Up to RECEIVE_SIZE bytes (b"" at end of stream) from the connection's socket ``fd``
    (``stream.socket.fileno()``, asked once per connection), waiting until some arrive."""
    waited = False
    try:
        while True:
            try:
                data = os.read(fd, RECEIVE_SIZE)
                break
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                waited = True
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
    if not waited:
        await trio.lowlevel.checkpoint()
    return data


def send_nowait(fd: int, data: bytes) -> memoryview:
    """As much of ``data`` as the kernel takes now; returns the rest (empty: all sent).

    A small answer nearly always goes in whole, so its write needs no deadline."""
    try:
        n = os.write(fd, data)
    except BlockingIOError:
        n = 0
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
    return memoryview(data)[n:]


async def send(fd: int, data: bytes | memoryview) -> None:
    """All of ``data``, waiting whenever the kernel's buffer is full."""
    view = memoryview(data)
    try:
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
                continue
            view = view[n:]
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


LINGER: Final = 1.0  # seconds a refused client's remaining bytes are read and discarded


async def linger(stream: trio.SocketStream) -> None:
    """Close in stages (RFC 9112 §9.6): after a refusal the client may still be sending; closing
    with its bytes unread makes the kernel answer RST, which can destroy the refusal before the
    client reads it. So: send FIN, then read and discard until the client closes (or LINGER)."""
    with trio.move_on_after(LINGER):
        try:
            await stream.send_eof()
            while await stream.receive_some(RECEIVE_SIZE):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class Timer:
    """A connection's current deadline, enforced by the server's watchdog (see
    ``HttpServer._watchdog``): moving it is a float assignment, where moving a trio cancel
    scope's deadline costs ~3 µs, four times per request."""

    __slots__ = ("at", "phase", "scope")

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.at = math.inf
        self.phase = "idle"  # idle | request | body | answer | write: which deadline ``at`` is

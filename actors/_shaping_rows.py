"""The rate limiter's messages as rows: a channel batch of ``Message`` decoded for the shaper.

Messages are handled in their wire form (``messages.to_wire`` rows), not as message objects:
decoding a batch into rows costs a fifth of building ``Message`` objects, and the limiter's
budget is a few microseconds a message (bench/shaping.py). The constants name the index of
each field in a row; older schema versions are upgraded on decoding.

Must not import: trio, lmdb, httpx, gateway, adapters. Pure.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from actors import messages
from actors.messages import Message

Row = list[Any]  # a Message in wire form: [tag, version, *fields]

_FIELD: Final = {name: i + 2 for i, name in enumerate(Message._fields)}
MSG_ID: Final = _FIELD["msg_id"]
ACCOUNT: Final = _FIELD["account"]
TO: Final = _FIELD["to"]
SENDER: Final = _FIELD["sender"]
ACCEPTED_AT: Final = _FIELD["accepted_at"]
CAMPAIGN: Final = _FIELD["campaign"]
NOT_AFTER: Final = _FIELD["not_after"]
PARTS: Final = _FIELD["parts"]
SEND_AT: Final = _FIELD["send_at"]
WIDTH: Final = 2 + len(_FIELD)  # tag, version, fields


def rows_from_batch(data: bytes) -> list[Row]:
    """Decode a channel batch of ``Message`` into rows, upgrading older versions.

    Raises:
        messages.DecodeError: not a batch of messages.
    """
    return decode_rows(data)[0]


def decode_rows(data: bytes) -> tuple[list[Row], bool]:
    """:func:`rows_from_batch`, and whether every row was already current: then ``data`` is
    exactly the encoding of the rows (and may be sent on for them as it is).

    Raises:
        messages.DecodeError: not a batch of messages.
    """
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise messages.DecodeError("not msgpack") from exc
    if not isinstance(rows, list):
        raise messages.DecodeError("a batch is a list")
    tag, version, width = Message.TAG, Message.VERSION, WIDTH
    current = True
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) != width or row[0] != tag or row[1] != version:
            m = messages.from_wire(row)
            if not isinstance(m, Message):
                raise messages.DecodeError(f"expected Message, got {type(m).__name__}")
            rows[i] = messages.to_wire(m)
            current = False
    return rows, current

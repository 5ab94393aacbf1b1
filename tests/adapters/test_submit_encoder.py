"""``PartEncoder.encode`` (the client's per-sender cached submit_sm builder) writes exactly what
``encode_part`` writes, and raises what it raises, for every part and connector option."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as s

from actors.messages import MsgId, SubmitPart
from adapters.smpp.submit import PartEncoder, SubmitOptions, encode_part

addresses = s.one_of(
    s.sampled_from(["+4915112345678", "4915112345678", "Septet", "12345", "+1", "", "a\0b",
                    "x" * 21, "+" + "9" * 20, "Ünïcode", "1" * 20]),
    s.text(max_size=24),
)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 — the same error either way is what is checked
        return (type(exc), str(exc))


@settings(max_examples=400, deadline=None)
@given(sender=addresses, to=addresses, udh=s.sampled_from([b"", b"\x05\x00\x03\x07\x02\x01",
                                                          b"\x06\x08\x04\x00\x07\x02\x02"]),
       body=s.binary(max_size=260), coding=s.sampled_from([0, 8, 4, 0x100, -1]),
       parts=s.integers(1, 3), concat=s.sampled_from(["udh", "sar"]), packed=s.booleans(),
       registered=s.sampled_from([0, 1, 0x11, 256]),
       service_type=s.sampled_from(["", "CMT", "toolong", "a\0", "é"]),
       ton=s.sampled_from([1, 0, 300]))
@example(sender="Septet", to="a\0b", udh=b"", body=b"hi", coding=0, parts=1, concat="udh",
         packed=False, registered=1, service_type="", ton=1)  # a NUL in the destination
@example(sender="Septet", to="+4915112345678", udh=b"", body=b"x" * 255, coding=8, parts=1,
         concat="udh", packed=False, registered=1, service_type="", ton=1)  # message_payload
def test_part_encoder_equals_encode_part(sender: str, to: str, udh: bytes, body: bytes,
                                         coding: int, parts: int, concat: str, packed: bool,
                                         registered: int, service_type: str, ton: int) -> None:
    options = SubmitOptions(concat, packed, registered, service_type, ton)  # type: ignore[arg-type]
    part = SubmitPart(MsgId("m"), 1, parts, to, sender, coding, udh, body, 7)
    encoder = PartEncoder(options)
    want = _outcome(encode_part, part, options)
    assert _outcome(encoder.encode, part) == want
    assert _outcome(encoder.encode, part) == want  # again, from the sender's cached head

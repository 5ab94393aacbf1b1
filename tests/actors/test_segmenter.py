"""The segmenter: its wire-row fast path gives exactly what the general path gives, and the
actor sends parts and refusals on the right channels."""

from __future__ import annotations

from functools import partial

import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from actors import messages as m
from actors import segmenter

_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(
        "Hello world 0123456789 @£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ^{}\\[~]|€"), max_size=500),
    st.text(max_size=300),
)


def _message(text: str, policy: str, max_parts: int,
             msg_id: str = "01ABCDEFGHJKMNPQRS") -> m.Message:
    return m.Message(m.MsgId(msg_id), "acc", "+351911111111", "Septet", text, policy, 1.0,
                     max_parts=max_parts)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, policy=st.sampled_from(["", "transliterate", "ucs2", "gsm7-strict", "national"]),
       max_parts=st.integers(0, 6), msg_id=st.text(min_size=1, max_size=20))
@example(text="Your code is 01234", policy="transliterate", max_parts=5, msg_id="X")
@example(text="a" * 161, policy="transliterate", max_parts=5, msg_id="X")  # two parts
@example(text="a" * 1000, policy="transliterate", max_parts=5, msg_id="X")  # too many
@example(text="Привет", policy="gsm7-strict", max_parts=5, msg_id="X")  # unencodable
def test_part_rows_equal_the_wire_form_of_plan_parts(text: str, policy: str, max_parts: int,
                                                     msg_id: str) -> None:
    msg = _message(text, policy, max_parts, msg_id)
    planned = segmenter.plan_parts(msg, 5.0)
    rows = segmenter.part_rows(msg, 5.0)
    if isinstance(planned, m.MessageFinished):
        assert rows == planned
    else:
        assert rows == [m.to_wire(p) for p in planned]
        assert m.decode_batch(m.encode_batch(planned)) == planned


async def test_run_sends_parts_and_refusals() -> None:
    in_send, in_recv = trio.open_memory_channel[bytes](4)
    out_send, out_recv = trio.open_memory_channel[bytes](4)
    fin_send, fin_recv = trio.open_memory_channel[bytes](4)
    msgs = [_message("short", "transliterate", 5, "A"), _message("b" * 200, "", 5, "B"),
            _message("c" * 400, "transliterate", 2, "C")]
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(segmenter.run, in_recv, out_send, fin_send, now=lambda: 7.0))
        async with in_send:
            await in_send.send(m.encode_batch(msgs))
        parts = [p async for item in out_recv for p in m.decode_batch_of(m.SubmitPart, item)]
        refused = [f async for item in fin_recv for f in m.decode_batch_of(m.MessageFinished, item)]
    expected = [p for x in msgs[:2] for p in segmenter.plan_parts(x, 7.0)]
    assert parts == expected
    assert [(p.msg_id, p.part, p.parts) for p in parts] == [("A", 1, 1), ("B", 1, 2), ("B", 2, 2)]
    assert refused == [segmenter.plan_parts(msgs[2], 7.0)]
    assert refused[0].code == "too_many_parts"

"""HTTP providers that send a long inbound message part by part (Vonage's ``concat-ref``,
``concat-total``, ``concat-part``): a real API server on 127.0.0.1 over a real LMDB store, the
inbound book, the notifier and a loopback receiver (the stack of test_http_inbound). The parts,
sent by GET in any order, are joined by the store into ONE message, listed once and pushed
once; a part the provider sends again (same ``messageId``) is a duplicate before and after its
message is whole; parts of different senders or connectors with the same reference never mix;
bad counts are 422 naming the field; the three settings load all together or not at all and
reach the parser through ``septet serve``."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import trio

from adapters.errors import InvalidInbound
from adapters.http_inbound import FORM, HTTP_REF_BITS, parse_inbound
from adapters.http_provider import HttpProviderConfig
from adapters.smpp.inbound import InboundPart
from codec import Concat
from gateway import cli
from gateway import config as cfg
from gateway._serve_carriers import http_carrier
from gateway.api.inbound import InboundWebhooks
from gateway.callbacks import RECEIVED
from gateway.errors import ConfigError
from gateway.inbound import PARTS, SEEN, purge_parts
from tests.gateway.test_http_inbound import TOKEN, Stack, listed, provider_toml, stack
from tests.gateway.test_inbound_push import HANDSET, OURS, until

VONAGE = HttpProviderConfig(
    name="vonage", url="https://rest.nexmo.com/sms/json", inbound_from_path="msisdn",
    inbound_to_path="to", inbound_text_path="text", inbound_id_path="messageId",
    inbound_time_path="message-timestamp", inbound_concat_ref_path="concat-ref",
    inbound_concat_total_path="concat-total", inbound_concat_part_path="concat-part")
OTHER = "+351910000009"  # a second handset
TEXTS = ("Yes, I can come tomorrow at ten, ", "but please send the address again ",
         "and the door code. Thanks, Ana")


def vonage_part(n: int, *, total: int = 3, ref: str = "0A01", sender: str = HANDSET,
                text: str | None = None) -> dict[str, str]:
    """Part ``n`` (1-based) of a message, as Vonage's GET webhook sends it."""
    return {"msisdn": sender.removeprefix("+"), "to": OURS.removeprefix("+"),
            "messageId": f"{sender[-4:]}-{ref}-{n}", "type": "text",
            "text": TEXTS[n - 1] if text is None else text,
            "message-timestamp": f"2026-11-25 08:00:0{n}", "concat": "true",
            "concat-ref": ref, "concat-total": str(total), "concat-part": str(n)}


def parser(config: HttpProviderConfig) -> Any:
    return lambda body, kind: parse_inbound(config, body, kind, received_at=time.time())


@asynccontextmanager
async def vonage(tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack with two Vonage-style connectors (``vonage`` and ``nexmo``) that join parts."""
    async with stack(tmp_path) as s:
        s.api.inbound_webhooks = InboundWebhooks(
            parsers={"vonage": parser(VONAGE), "nexmo": parser(replace(VONAGE, name="nexmo"))},
            tokens={"vonage": TOKEN, "nexmo": TOKEN}, store=s.book.store)
        yield s


def waiting_parts(s: Stack) -> int:
    with s.store.read() as txn:
        return int(txn.stat(s.store.db(PARTS))["entries"])


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 1, 2), (2, 3, 1)])
async def test_the_parts_in_any_order_are_one_message_listed_and_pushed_once(
        tmp_path: Path, order: tuple[int, int, int]) -> None:
    async with vonage(tmp_path) as s:
        async with s.provider() as c:
            answers = []
            for n in order:
                assert await listed(s) == []  # nothing is listed before the last part
                answers.append((await c.get("/v1/inbound/vonage", params=vonage_part(n))).json())
        assert answers == [{"received": 1, "duplicates": 0}] * 3
        [message] = await listed(s)
        await until(lambda: s.stats.delivered == 1)
        assert (s.book.stored, s.book.pushed, s.book.duplicates) == (1, 1, 0)
        assert waiting_parts(s) == 0
    assert message == {"id": "0000000000000001", "from": HANDSET.removeprefix("+"),
                       "to": OURS.removeprefix("+"), "text": "".join(TEXTS),
                       "received_at": "2026-11-25T08:00:03.000Z",  # the latest part's time
                       "connector": "vonage", "encoding": "utf-8", "parts": 3}
    [push] = s.receiver.requests
    body = json.loads(push.body)
    assert body["type"] == RECEIVED and body["data"] == {"account": "alpha", **message}


async def test_a_part_sent_again_is_a_duplicate_before_and_after_its_message_is_whole(
        tmp_path: Path) -> None:
    async with vonage(tmp_path) as s:
        async with s.provider() as c:
            async def send(n: int, **kw: str) -> Any:
                r = await c.get("/v1/inbound/vonage", params={**vonage_part(n), **kw})
                assert r.status_code == 200, r.text
                return r.json()

            before = [await send(1), await send(1, text="changed"), await send(3)]
            assert waiting_parts(s) == 2  # the copy neither replaced part 1 nor added a part
            last = await send(2)
            [message] = await listed(s)
            await until(lambda: s.stats.delivered == 1)
            after = [await send(2), await send(1), await send(3, text="changed")]
        assert s.outbox.pending_count() == 0  # the copies queued no push
        assert await listed(s) == [message]
        assert waiting_parts(s) == 0  # no copy started a group that waits for the purge
        assert (s.book.stored, s.book.pushed, s.book.duplicates) == (1, 1, 4)
        with s.store.read() as txn:  # each part's id now names its message
            seen = [msgpack.unpackb(txn.get(f"vonage\x00{HANDSET[-4:]}-0A01-{n}".encode(),
                                            db=s.store.db(SEEN))) for n in (1, 2, 3)]
    assert [a["duplicates"] for a in before] == [0, 1, 0] and last["duplicates"] == 0
    assert [a["duplicates"] for a in after] == [1, 1, 1]
    assert message["text"] == "".join(TEXTS)
    assert [(account, msg_id) for _, account, msg_id in seen] == [
        ("alpha", message["id"])] * 3
    assert len(s.receiver.requests) == 1


async def test_parts_of_two_senders_or_two_connectors_with_one_reference_never_mix(
        tmp_path: Path) -> None:
    async with vonage(tmp_path) as s:
        async with s.provider() as c:
            for n in (1, 2):  # interleaved, same reference and total
                for sender in (HANDSET, OTHER):
                    await c.get("/v1/inbound/vonage", params=vonage_part(
                        n, total=2, sender=sender, text=f"{sender[-2:]}:{n} "))
            # the same sender and reference on another connector: a group of its own
            alone = await c.get("/v1/inbound/nexmo", params=vonage_part(1, total=2))
        messages = await listed(s)
        assert alone.json() == {"received": 1, "duplicates": 0}
        assert waiting_parts(s) == 1
    assert sorted((m["from"], m["text"], m["parts"]) for m in messages) == [
        (HANDSET.removeprefix("+"), "00:1 00:2 ", 2), (OTHER.removeprefix("+"), "09:1 09:2 ", 2)]


def ref_hash(ref: str) -> int:
    return int.from_bytes(hashlib.blake2b(ref.encode(), digest_size=8).digest(), "big")


async def test_two_references_of_one_sender_are_kept_apart_on_all_64_bits(
        tmp_path: Path) -> None:
    # two references whose hashes share their low 16 bits (a UDH-sized key would mix them)
    first: dict[int, str] = {}
    for i in range(100_000):
        ref = f"r{i}"
        low = ref_hash(ref) & 0xFFFF
        if low in first:
            refs = (first[low], ref)
            break
        first[low] = ref
    else:
        pytest.fail("no two references share their low 16 bits")
    async with vonage(tmp_path) as s:
        async with s.provider() as c:
            for n in (1, 2):
                for ref in refs:
                    await c.get("/v1/inbound/vonage", params=vonage_part(
                        n, total=2, ref=ref, text=f"{ref}:{n} "))
        texts = sorted(m["text"] for m in await listed(s))
    assert texts == sorted(f"{ref}:1 {ref}:2 " for ref in refs)


async def test_a_single_part_or_no_concat_fields_is_a_plain_message(tmp_path: Path) -> None:
    plain = {k: v for k, v in vonage_part(1).items() if not k.startswith("concat")}
    async with vonage(tmp_path) as s, s.provider() as c:
        one = await c.get("/v1/inbound/vonage",
                          params={**vonage_part(1, total=1, ref="x"), "concat-part": "1"})
        bare = await c.get("/v1/inbound/vonage", params={**plain, "messageId": "m-9",
                                                         "concat-ref": ""})
        assert (one.json(), bare.json()) == ({"received": 1, "duplicates": 0},) * 2
        assert [(m["text"], m["parts"]) for m in await listed(s)] == [(TEXTS[0], 1)] * 2


async def test_bad_counts_are_422_naming_the_field_and_nothing_is_stored(
        tmp_path: Path) -> None:
    cases = [({"concat-total": "0"}, "query:concat-total", "must be an integer from 1 to 255"),
             ({"concat-total": "256"}, "query:concat-total", "must be an integer from 1 to 255"),
             ({"concat-total": "two"}, "query:concat-total", "must be an integer from 1 to 255"),
             ({"concat-part": "0"}, "query:concat-part", "must be an integer from 1 to 255"),
             ({"concat-part": "-1"}, "query:concat-part", "must be an integer from 1 to 255"),
             ({"concat-part": "4"}, "query:concat-part", "must not exceed concat-total"),
             ({"concat-part": ""}, "query:concat-part",
              "missing (the other concatenation fields are set)"),
             ({"concat-ref": "r" * 257}, "query:concat-ref",
              "must be a string or an integer (1 to 256 bytes)")]
    async with vonage(tmp_path) as s, s.provider() as c:
        got = [await c.get("/v1/inbound/vonage", params={**vonage_part(1), **bad})
               for bad, _, _ in cases]
        # the POST names the body field, with the 400 of every unreadable body field
        posted = await c.post("/v1/inbound/vonage", json={**vonage_part(1), "concat-total": 0})
        assert await listed(s) == [] and waiting_parts(s) == 0
    assert [(r.status_code, r.json()["errors"]) for r in got] == [
        (422, [{"field": field, "reason": reason}]) for _, field, reason in cases]
    assert (posted.status_code, posted.json()["errors"][0]["field"]) == (400, "concat-total")


def test_the_reference_is_a_stable_64_bit_hash_and_counts_may_be_json_integers() -> None:
    body = json.dumps({**vonage_part(2), "concat-ref": 77, "concat-total": 3,
                       "concat-part": 2}).encode()
    [got] = parse_inbound(VONAGE, body, "application/json", received_at=1.0)
    assert got.part.concat == Concat(ref_hash("77"), 3, 2, HTTP_REF_BITS)
    assert got.provider_id == f"{HANDSET[-4:]}-0A01-2"
    form = parse_inbound(VONAGE, str(httpx.QueryParams(vonage_part(2, ref="77"))).encode(),
                         FORM, received_at=1.0)
    assert form[0].part.concat == got.part.concat  # "77" and 77 are one reference
    with pytest.raises(InvalidInbound) as caught:
        parse_inbound(VONAGE, json.dumps({**vonage_part(2), "concat-total": True}).encode(),
                      "application/json", received_at=1.0)
    assert caught.value.field == "concat-total"


async def test_an_incomplete_message_is_purged_like_smpp_parts(tmp_path: Path) -> None:
    async with vonage(tmp_path) as s:
        old = InboundPart("vonage", HANDSET, OURS, "lonely", 1000.0, "utf-8",
                          Concat(5, 2, 1, HTTP_REF_BITS))
        new = old._replace(received_at=time.time(), concat=Concat(6, 2, 1, HTTP_REF_BITS))
        await s.book.store([old, new], ["p-old", "p-new"])
        assert waiting_parts(s) == 2
        assert await purge_parts(s.store, older_than=2000.0) == 1
        assert waiting_parts(s) == 1 and await listed(s) == []


def test_the_three_settings_load_together_or_not_at_all(tmp_path: Path) -> None:
    three = ('inbound_concat_ref_path = "concat-ref"\ninbound_concat_total_path = "concat-total"\n'
             'inbound_concat_part_path = "concat-part"')
    [h] = cfg.load(provider_toml(tmp_path, three), env={}).http_providers
    config = http_carrier(h).config
    assert (config.inbound_concat_ref_path, config.inbound_concat_total_path,
            config.inbound_concat_part_path) == ("concat-ref", "concat-total", "concat-part")
    [default] = cfg.load(provider_toml(tmp_path), env={}).http_providers
    assert http_carrier(default).config.inbound_concat_ref_path == ""
    for some in (three.splitlines()[0], "\n".join(three.splitlines()[1:]),
                 three.replace('"concat-part"', '""')):
        with pytest.raises(ConfigError) as caught:
            cfg.load(provider_toml(tmp_path, some), env={})
        [problem] = caught.value.problems
        assert all(name in problem for name in ("inbound_concat_ref_path",
                                                "inbound_concat_total_path",
                                                "inbound_concat_part_path"))
    with pytest.raises(ConfigError) as caught:
        cfg.load(provider_toml(tmp_path, three + '\ninbound_token_param = "concat-ref"'),
                 env={})
    assert any("inbound_token_param" in p for p in caught.value.problems)


async def test_serve_joins_the_parts_of_a_get_webhook(tmp_path: Path) -> None:
    config = cfg.load(provider_toml(tmp_path, 'inbound_concat_ref_path = "concat-ref"\n'
                                              'inbound_concat_total_path = "concat-total"\n'
                                              'inbound_concat_part_path = "concat-part"'),
                      env={"SEPTET_STORE__PATH": str(tmp_path / "db"),
                           "SEPTET_HTTP__PORT": "0", "SEPTET_STORE__SYNC": "false",
                           "SEPTET_SIMULATOR__ENABLED": "false"})
    queries = [{"id": f"m-{n}", "msisdn": HANDSET, "to": "+351912000000", "text": TEXTS[n - 1],
                "concat-ref": "ab", "concat-total": "2", "concat-part": str(n)} for n in (2, 1)]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(cli.serve, config, key_file=str(tmp_path / "key")))
        key = (tmp_path / "key").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            auth = {"authorization": "Bearer receipt-token-0123456789"}
            answers = [(await c.get("/v1/inbound/acme", params=q, headers=auth)).json()
                       for q in (*queries, queries[0])]
            doc: dict[str, Any] = (await c.get(
                "/v1/inbound", headers={"authorization": f"Bearer {key}"})).json()
        nursery.cancel_scope.cancel()
    assert [a["duplicates"] for a in answers] == [0, 0, 1]
    assert [(m["text"], m["parts"]) for m in doc["messages"]] == [("".join(TEXTS[:2]), 2)]

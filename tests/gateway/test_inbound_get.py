"""HTTP providers' GET inbound webhook, ``GET /v1/inbound/{connector}?<fields>``: a real API
server on 127.0.0.1 over a real LMDB store, the inbound book, the notifier and a loopback
receiver (the stack of test_http_inbound). A Vonage-style GET (their inbound default) is
stored, listed, pushed as ``SMS_RECEIVED`` and, sent again with the same ``messageId``, stored
and pushed once; the token comes as a bearer header or, where the connector names one, as a
query parameter that is never logged; refusals are problem documents naming the field. Also
the ``inbound_token_param`` setting and the route through ``septet serve``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from adapters.http_inbound import parse_inbound
from adapters.http_provider import HttpProviderConfig
from gateway import cli
from gateway import config as cfg
from gateway.api.inbound import InboundWebhooks
from gateway.callbacks import RECEIVED
from gateway.errors import ConfigError
from tests.gateway.test_http_inbound import TOKEN, Stack, listed, provider_toml, stack
from tests.gateway.test_inbound_push import HANDSET, OURS, until

VONAGE = HttpProviderConfig(
    name="vonage", url="https://rest.nexmo.com/sms/json", inbound_from_path="msisdn",
    inbound_to_path="to", inbound_text_path="text", inbound_id_path="messageId",
    inbound_time_path="message-timestamp")
PARAM = "token"
MO = {"msisdn": HANDSET.removeprefix("+"), "to": OURS.removeprefix("+"),
      "messageId": "0A0000000123ABCD1", "text": "Olá mundo & 50% off?", "type": "unicode",
      "keyword": "OLÁ", "api-key": "abcd1234", "message-timestamp": "2026-11-25 08:00:00"}


@asynccontextmanager
async def vonage(tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack with a Vonage-style connector whose token may come as ``?token=``."""
    async with stack(tmp_path) as s:
        s.api.inbound_webhooks = InboundWebhooks(
            parsers={"vonage": lambda body, kind: parse_inbound(VONAGE, body, kind,
                                                                received_at=time.time())},
            tokens={"vonage": TOKEN}, store=s.book.store, token_params={"vonage": PARAM})
        yield s


async def test_a_vonage_get_is_stored_listed_and_pushed_once_even_sent_twice(
        tmp_path: Path) -> None:
    async with vonage(tmp_path) as s:
        async with s.provider() as c:
            first = await c.get("/v1/inbound/vonage", params=MO)
            assert first.status_code == 200, first.text
            assert first.json() == {"received": 1, "duplicates": 0}
            [message] = await listed(s)
            await until(lambda: s.stats.delivered == 1)
            again = await c.get("/v1/inbound/vonage", params={**MO, "text": "changed"})
        assert again.status_code == 200 and again.json() == {"received": 1, "duplicates": 1}
        assert s.outbox.pending_count() == 0  # the repeat queued no push
        assert await listed(s) == [message]
        assert (s.book.stored, s.book.pushed, s.book.duplicates) == (1, 1, 1)
    assert message == {"id": "0000000000000001", "from": MO["msisdn"], "to": MO["to"],
                       "text": "Olá mundo & 50% off?", "received_at": "2026-11-25T08:00:00.000Z",
                       "connector": "vonage", "encoding": "utf-8", "parts": 1}
    [push] = s.receiver.requests
    body = json.loads(push.body)
    assert body["type"] == RECEIVED and body["data"] == {"account": "alpha", **message}


async def test_get_and_post_of_one_message_are_one_message(tmp_path: Path) -> None:
    async with vonage(tmp_path) as s, s.provider() as c:
        got = await c.get("/v1/inbound/vonage", params=MO)
        posted = await c.post("/v1/inbound/vonage", data=MO)  # the same id, as a form
        assert (got.json(), posted.json()) == ({"received": 1, "duplicates": 0},
                                               {"received": 1, "duplicates": 1})
        assert len(await listed(s)) == 1


async def test_the_token_may_come_as_the_named_query_parameter_and_is_never_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with vonage(tmp_path) as s, s.provider(None) as c:
        ok = await c.get("/v1/inbound/vonage", params={**MO, PARAM: TOKEN})
        posted = await c.post("/v1/inbound/vonage", params={PARAM: TOKEN},
                              data={**MO, "messageId": "m-2"})
        refused = [await c.get("/v1/inbound/vonage", params=query) for query in (
            MO, {**MO, PARAM: TOKEN + "x"}, {**MO, PARAM: ""},
            [*MO.items(), (PARAM, TOKEN), (PARAM, TOKEN)])]  # twice: refused
        # a header, even a wrong one, is what counts when there is one
        header = await c.get("/v1/inbound/vonage", params={**MO, PARAM: TOKEN},
                             headers={"authorization": "Bearer wrong"})
        # a connector that names no parameter takes the header only
        s.api.inbound_webhooks = replace(s.api.inbound_webhooks, token_params={})
        unnamed = await c.get("/v1/inbound/vonage", params={**MO, PARAM: TOKEN})
        assert [m["text"] for m in await listed(s)] == [MO["text"]] * 2
    assert ok.json() == {"received": 1, "duplicates": 0} and posted.status_code == 200
    for r in (*refused, header, unnamed):
        assert r.status_code == 401, r.text
        assert r.headers["content-type"] == "application/problem+json"
    # the server's records (the test's own httpx client logs each URL it asks for, token
    # and all: the reason a URL is a worse place for a secret than a header)
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("gateway", "adapters",
                                                                   "actors")]
    assert ours and TOKEN not in " ".join(f"{r.getMessage()} {r.__dict__}" for r in ours)


async def test_refusals_are_problem_documents_naming_the_query_field(tmp_path: Path) -> None:
    async with vonage(tmp_path) as s, s.provider() as c:
        no_text = await c.get("/v1/inbound/vonage",
                              params={k: v for k, v in MO.items() if k != "text"})
        empty = await c.get("/v1/inbound/vonage")
        bad_time = await c.get("/v1/inbound/vonage",
                               params={**MO, "message-timestamp": "yesterday"})
        garbage = await c.get("/v1/inbound/vonage?msisdn")
        unknown = await c.get("/v1/inbound/nobody", params=MO)
        head = await c.head("/v1/inbound/vonage", params=MO)  # checks the token, stores nothing
        head_wrong = await c.head("/v1/inbound/vonage", params=MO,
                                  headers={"authorization": "Bearer wrong"})
        s.api.inbound_webhooks = replace(s.api.inbound_webhooks, store=None)
        down = await c.get("/v1/inbound/vonage", params=MO)
        s.api.inbound_webhooks = None
        off = await c.get("/v1/inbound/vonage", params=MO)
        assert await listed(s) == []
    assert [(r.status_code, r.json()["errors"]) for r in (no_text, empty, bad_time, garbage)] == [
        (422, [{"field": "query:text", "reason": "missing"}]),
        (422, [{"field": "query:msisdn", "reason": "missing"}]),
        (422, [{"field": "query:message-timestamp",
                "reason": "not Unix seconds or an ISO 8601 time"}]),
        (422, [{"field": "query", "reason": "a query string that does not parse"}])]
    for r in (no_text, garbage, unknown, down, off):
        assert r.headers["content-type"] == "application/problem+json"
    assert (unknown.status_code, off.status_code, down.status_code) == (404, 404, 503)
    assert (head.status_code, head_wrong.status_code) == (200, 401)


async def test_the_get_route_is_in_the_openapi_document(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.provider(None) as c:
        doc = (await c.get("/openapi.json")).json()
    op = doc["paths"]["/v1/inbound/{connector}"]["get"]
    assert op["security"] == [] and {"401", "404", "422", "503"} <= set(op["responses"])
    assert op["operationId"] != doc["paths"]["/v1/inbound/{connector}"]["post"]["operationId"]


def test_inbound_token_param_loads_and_is_checked(tmp_path: Path) -> None:
    [h] = cfg.load(provider_toml(tmp_path, 'inbound_token_param = "sig-token_1"'),
                   env={}).http_providers
    assert h.inbound_token_param == "sig-token_1"
    assert cfg.load(provider_toml(tmp_path), env={}).http_providers[0].inbound_token_param == ""
    for bad, says in (('"a b"', "letters, digits"), ('"msisdn"', "would be stored"),
                      ('"' + "t" * 65 + '"', "at most 64")):
        with pytest.raises(ConfigError) as caught:
            cfg.load(provider_toml(tmp_path, f"inbound_token_param = {bad}"), env={})
        assert any("inbound_token_param" in p and says in p for p in caught.value.problems)


def _serve_config(tmp_path: Path, extra: str) -> cfg.Config:
    """provider_toml's connector with ``extra`` settings, for ``septet serve`` on a free port."""
    return cfg.load(provider_toml(tmp_path, extra),
                    env={"SEPTET_STORE__PATH": str(tmp_path / "db"), "SEPTET_HTTP__PORT": "0",
                         "SEPTET_STORE__SYNC": "false", "SEPTET_SIMULATOR__ENABLED": "false"})


async def test_serve_answers_a_get_webhook(tmp_path: Path) -> None:
    config = _serve_config(tmp_path, 'inbound_token = "a-separate-inbound-token"')
    # (provider_toml's inbound_list_path applies to JSON bodies only: a query is one message)
    query = {"id": "m-1", "msisdn": HANDSET, "to": "+351912000000", "text": "hello"}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(cli.serve, config, key_file=str(tmp_path / "key")))
        key = (tmp_path / "key").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            auth = {"authorization": "Bearer a-separate-inbound-token"}
            answers = [await c.get("/v1/inbound/acme", params=query, headers=auth)
                       for _ in range(2)]
            doc: dict[str, Any] = (await c.get(
                "/v1/inbound", headers={"authorization": f"Bearer {key}"})).json()
        nursery.cancel_scope.cancel()
    assert [a.json() for a in answers] == [{"received": 1, "duplicates": 0},
                                           {"received": 1, "duplicates": 1}]
    assert [(m["from"], m["text"]) for m in doc["messages"]] == [(HANDSET, "hello")]


async def test_serve_takes_the_token_from_the_named_query_parameter(tmp_path: Path) -> None:
    config = _serve_config(tmp_path, 'inbound_token = "a-separate-inbound-token"\n'
                                     'inbound_token_param = "token"')
    query = {"id": "m-2", "msisdn": HANDSET, "to": "+351912000000", "text": "by query"}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(cli.serve, config, key_file=str(tmp_path / "key")))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            good = await c.get("/v1/inbound/acme",
                               params={**query, "token": "a-separate-inbound-token"})
            bad = await c.get("/v1/inbound/acme", params={**query, "token": "wrong"})
        nursery.cancel_scope.cancel()
    assert (good.status_code, good.json()) == (200, {"received": 1, "duplicates": 0})
    assert bad.status_code == 401

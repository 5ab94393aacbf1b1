"""POST /v1/messages without an Idempotency-Key takes a direct path in ``Api.__call__`` (no
route table, no handler lookup) and a single message skips the batch bookkeeping in
``MessageRoutes.prepare``: whatever the request, the answer must be byte for byte the one the
general path (route table → handler → ``MessageRoutes.submit``) gives."""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgpack
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.accounts import Account
from gateway.api import create_api
from gateway.api.problems import Problem
from gateway.api.routes import Api
from gateway.config import ApiConfig
from gateway.errors import Saturated
from gateway.http._protocol import ReaderLimits, Request, RequestReader, response_bytes

NOW = 1_780_000_000.0
ACCOUNT = Account("acme", default_prefix="351")


class NullGateway:
    """Accepts at once; refuses (Saturated) when ``saturated``."""

    ready = True
    saturated = False

    class store:  # lower case: it stands for the gateway.store that create_api reads
        @staticmethod
        def db(name: bytes) -> bytes:
            return name

    async def accept(self, messages: Any, also: Any = None) -> None:
        if self.saturated:
            raise Saturated(2.0)


def _check(url: str) -> str:
    if "bad" in url:
        raise ValueError("refused")
    return url


def make_api(saturated: bool) -> Api:
    gw = NullGateway()
    gw.saturated = saturated
    api = create_api(gw, ApiConfig(), check_callback=_check, now=lambda: NOW)
    api.accounts.authenticate = lambda key: ACCOUNT if key == "sk_good" else None  # type: ignore[method-assign]
    counter = itertools.count()
    api._messages._new_id = lambda: f"ID{next(counter):08d}"  # type: ignore[assignment]
    return api


async def general(api: Api, request: Request) -> Any:
    """The route-table path every other route takes."""
    route, arg = api._match(request)
    try:
        if route is None:
            raise arg
        account = api._authenticate(request) if route.auth else None
        return await getattr(api, "_" + route.handler)(request, account, arg)
    except Problem as problem:
        return problem.response()


def parse(body: bytes, auth: str | None, content_type: str) -> Request:
    head = "POST /v1/messages HTTP/1.1\r\nHost: h\r\n"
    if auth is not None:
        head += f"Authorization: {auth}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    (request,) = RequestReader(ReaderLimits()).feed(head.encode() + body)
    return request


values = st.one_of(
    st.sampled_from(["+351912345678", "912345678", "+35112", "+1800FLOWERS", "", " ", "Septet",
                     "Olá €", "x" * 40, "http://cb.example/x", "http://bad.example/", "2026-01-01T00:00:00Z"]),
    st.integers(-2, 300), st.none(), st.booleans(), st.just([]), st.just({"a": "b"}))
fields = st.sampled_from(["to", "from", "text", "client_ref", "campaign", "callback_url",
                          "encoding", "max_parts", "fields", "send_at", "unknown"])
items = st.dictionaries(fields, values, max_size=6)
documents = st.one_of(items, st.builds(lambda ms, d: {**d, "messages": ms},
                                       st.lists(items, max_size=4),
                                       st.dictionaries(st.sampled_from(["from", "text", "zzz"]),
                                                       values, max_size=2)),
                      st.just([]), st.just("text"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, auth=st.sampled_from(["Bearer sk_good", "Bearer sk_bad", None, "Basic x"]),
       fmt=st.sampled_from(["application/json", "application/msgpack", "", "text/plain"]),
       saturated=st.booleans())
@example(doc={"to": "+351912345678", "from": "Septet", "text": "hi"}, auth="Bearer sk_good",
         fmt="application/json", saturated=False)
@example(doc={"to": "+351912345678", "from": "Septet", "text": "hi", "client_ref": "r1"},
         auth="Bearer sk_good", fmt="application/json", saturated=True)
@example(doc={"to": "912345678", "from": "Septet", "text": "hi", "callback_url": "http://bad.x"},
         auth="Bearer sk_good", fmt="application/msgpack", saturated=False)
def test_fast_path_answers_as_the_general_path(doc: Any, auth: str | None, fmt: str,
                                               saturated: bool) -> None:
    body = msgpack.packb(doc) if fmt == "application/msgpack" else json.dumps(doc).encode()

    async def both() -> tuple[bytes, bytes]:
        fast = await make_api(saturated)(parse(body, auth, fmt))
        slow = await general(make_api(saturated), parse(body, auth, fmt))
        return (response_bytes(fast, date="D", keep_alive=True),
                response_bytes(slow, date="D", keep_alive=True))

    fast, slow = trio.run(both)
    assert fast == slow


def test_bad_json_and_empty_bodies_answer_alike() -> None:
    async def run() -> None:
        for body in (b"", b"{", b'{"to": 1, "to": 2}', b"[1]", b"NaN"):
            fast = await make_api(False)(parse(body, "Bearer sk_good", "application/json"))
            slow = await general(make_api(False), parse(body, "Bearer sk_good",
                                                        "application/json"))
            assert response_bytes(fast, date="D", keep_alive=True) == response_bytes(
                slow, date="D", keep_alive=True)
            assert fast.status in (400, 422)

    trio.run(run)

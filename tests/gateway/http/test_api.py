"""API v1 over a real server and store: happy paths, auth and isolation, idempotency,
history pagination and CSV, operational endpoints, and the OpenAPI document."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import httpx
import msgpack
import trio

from actors import messages as m
from gateway.accounts import Account, AccountBook
from gateway.api import ROUTES, create_api
from gateway.config import ApiConfig
from tests.gateway.http.conftest import Served

OK = {"to": "+351912345678", "from": "Septet", "text": "Olá"}


async def test_single_message_is_accepted_after_commit(served: Served) -> None:
    async with served.client() as c:
        r = await c.post("/v1/messages", json=OK)
    assert r.status_code == 202
    doc = r.json()
    assert doc["status"] == "ACCEPTED" and doc["to"] == "+351912345678"
    assert (doc["encoding"], doc["parts"], doc["replacements"]) == ("gsm7", 1, [["á", "a"]])
    assert r.headers["location"] == f"/v1/messages/{doc['id']}"
    with served.store.read() as txn:
        stored = m.decode(txn.get(doc["id"].encode(), db=served.store.db(b"messages")))
    assert isinstance(stored, m.Message)
    assert (stored.account, stored.sender, stored.text, stored.parts) == ("alpha", "Septet", "Olá", 1)


async def test_national_number_takes_the_account_or_request_prefix(served: Served) -> None:
    async with served.client() as c:
        r1 = await c.post("/v1/messages", json={**OK, "to": "912 345 678"})
        r2 = await c.post("/v1/messages", json={**OK, "to": "07911 123456",
                                                "default_country_prefix": "+44"})
        r3 = await c.post("/v1/messages", json={**OK, "to": "+34612345678",
                                                "default_country_prefix": "44"})
    assert r1.json()["to"] == "+351912345678"
    assert r2.json()["to"] == "+447911123456"  # UK trunk 0 dropped
    assert r3.json()["to"] == "+34612345678"  # a number with a prefix keeps it


async def test_template_and_phone_fields_in_priority_order(served: Served) -> None:
    item = {"from": "Septet", "text": "Hi {name}, {{literal}}",
            "fields": {"name": "Ana", "phone": "+351961111111", "mobilephone": "+351962222222",
                       "mobile_phone": "+351963333333"}}
    async with served.client() as c:
        r = await c.post("/v1/messages", json=item)
        view = (await c.get(r.headers["location"])).json()
    assert r.json()["to"] == "+351963333333"
    assert view["text"] == "Hi Ana, {literal}"
    item["fields"].pop("mobile_phone")
    async with served.client() as c:
        r = await c.post("/v1/messages", json=item)
    assert r.json()["to"] == "+351962222222"


async def test_batch_with_defaults_and_msgpack_body(served: Served) -> None:
    body = {"from": "Septet", "campaign": "spring", "messages": [
        {"to": f"+3519123456{i:02d}", "text": f"n{i}"} for i in range(50)]}
    async with served.client() as c:
        r = await c.post("/v1/messages", content=msgpack.packb(body),
                         headers={"content-type": "application/msgpack"})
    assert r.status_code == 202
    assert r.headers["content-type"] == "application/msgpack"
    doc = msgpack.unpackb(r.content)
    assert doc["accepted"] == 50 and [x["index"] for x in doc["messages"]] == list(range(50))
    assert served.message_count() == 50


async def test_get_message_shows_state_parts_and_events(served: Served) -> None:
    async with served.client() as c:
        r = await c.post("/v1/messages", json={**OK, "text": "ção" * 30, "encoding": "ucs2",
                                               "client_ref": "crm-1"})
        view = (await c.get(r.headers["location"])).json()
    assert view["state"] == "ACCEPTED" and view["parts"] == 2 and view["encoding"] == "ucs2"
    assert len(view["part_status"]) == 2 and view["events"] == []
    assert view["client_ref"] == "crm-1"


async def test_auth_is_required_and_checked(served: Served) -> None:
    async with served.client(None) as c:
        missing = await c.post("/v1/messages", json=OK)
        wrong = await c.post("/v1/messages", json=OK, headers={"authorization": "Bearer sk_nope"})
        basic = await c.get("/v1/messages", headers={"authorization": "Basic YTpi"})
    for r in (missing, wrong, basic):
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["errors"][0]["field"] == "header:Authorization"
    assert served.message_count() == 0


async def test_another_accounts_message_answers_404(served: Served) -> None:
    async with served.client("alpha") as a, served.client("beta") as b:
        r = await a.post("/v1/messages", json=OK)
        mine = await a.get(r.headers["location"])
        theirs = await b.get(r.headers["location"])
        nothing = await b.get("/v1/messages/01ZZZZZZZZZZZZZZZZ")
        listed = await b.get("/v1/messages")
    assert mine.status_code == 200
    assert theirs.status_code == 404 and nothing.status_code == 404
    assert theirs.json()["title"] == nothing.json()["title"]  # indistinguishable
    assert listed.json()["messages"] == []


async def test_idempotency_replays_refuses_other_body_and_in_flight(served: Served) -> None:
    headers = {"idempotency-key": "order-42"}
    async with served.client() as c:
        first = await c.post("/v1/messages", json=OK, headers=headers)
        again = await c.post("/v1/messages", json=OK, headers=headers)
        other = await c.post("/v1/messages", json={**OK, "text": "other"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.content == again.content
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "header:Idempotency-Key"
    assert served.message_count() == 1

    # The key is scoped per account: beta may use the same key.
    async with served.client("beta") as b:
        r = await b.post("/v1/messages", json=OK, headers=headers)
    assert r.status_code == 202 and r.json()["id"] != first.json()["id"]

    # While the first request with a key is being handled, a second one gets 409.
    served.gateway.hold = trio.Event()
    results: dict[str, int] = {}
    async with served.client() as c, trio.open_nursery() as nursery:
        async def post(name: str) -> None:
            r = await c.post("/v1/messages", json=OK, headers={"idempotency-key": "slow"})
            results[name] = r.status_code
        nursery.start_soon(post, "first")
        await trio.testing.wait_all_tasks_blocked(0.05)
        await post("second")
        served.gateway.hold.set()
    assert results == {"first": 202, "second": 409}


async def test_idempotent_refusal_is_replayed_and_record_commits_with_messages(served: Served) -> None:
    headers = {"idempotency-key": "bad-1"}
    async with served.client() as c:
        r1 = await c.post("/v1/messages", json={**OK, "to": "x"}, headers=headers)
        r2 = await c.post("/v1/messages", json={**OK, "to": "x"}, headers=headers)
    assert r1.status_code == r2.status_code == 422 and r1.content == r2.content
    assert served.store.entries(b"idempotency") == 1


async def test_saturation_answers_503_with_retry_after_and_keeps_no_key(served: Served) -> None:
    served.gateway.saturated = True
    headers = {"idempotency-key": "k-503"}
    async with served.client() as c:
        r = await c.post("/v1/messages", json=OK, headers=headers)
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.headers["content-type"] == "application/problem+json"
        served.gateway.saturated = False
        retry = await c.post("/v1/messages", json=OK, headers=headers)
    assert retry.status_code == 202  # the 503 was not recorded against the key
    assert served.message_count() == 1


async def test_history_pagination_filters_and_csv(served: Served) -> None:
    async with served.client() as c:
        for i in range(25):
            await c.post("/v1/messages", json={**OK, "to": f"+3519123456{i % 5:02d}",
                                               "text": f"code {i}", "campaign": f"c{i % 2}"})
        seen, cursor = [], None
        while True:
            params = {"limit": "7", "campaign": "c0"} | ({"cursor": cursor} if cursor else {})
            page = (await c.get("/v1/messages", params=params)).json()
            seen += [x["text"] for x in page["messages"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"code {i}" for i in range(0, 25, 2)]
        by_to = (await c.get("/v1/messages", params={"to": "912345601"})).json()["messages"]
        assert [x["text"] for x in by_to] == ["code 1", "code 6", "code 11", "code 16", "code 21"]
        by_q = (await c.get("/v1/messages", params={"q": "CODE 1"})).json()["messages"]
        assert len(by_q) == 11  # 1, 10..19
        by_state = (await c.get("/v1/messages", params={"status": "accepted,sent"})).json()
        assert len(by_state["messages"]) == 25
        none = (await c.get("/v1/messages", params={"status": "DELIVERED"})).json()
        assert none == {"messages": [], "next_cursor": None}
        r = await c.get("/v1/messages", params={"campaign": "c1"}, headers={"accept": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["transfer-encoding"] == "chunked"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["text"] for row in rows] == [f"code {i}" for i in range(1, 25, 2)]
    assert rows[0]["to"] == "+351912345601" and rows[0]["state"] == "ACCEPTED"


async def test_history_time_window(served: Served) -> None:
    async with served.client() as c:
        await c.post("/v1/messages", json=OK)
        future = (await c.get("/v1/messages", params={"since": "2100-01-01T00:00:00Z"})).json()
        past = (await c.get("/v1/messages", params={"until": "2000-01-01T00:00:00+00:00"})).json()
        now = (await c.get("/v1/messages", params={"since": "0"})).json()
    assert future["messages"] == [] and past["messages"] == [] and len(now["messages"]) == 1


async def test_csv_cells_cannot_inject_formulas(served: Served) -> None:
    async with served.client() as c:
        await c.post("/v1/messages", json={**OK, "text": "=HYPERLINK(\"x\")"})
        r = await c.get("/v1/messages", headers={"accept": "text/csv"})
    assert next(iter(csv.DictReader(io.StringIO(r.text))))["text"].startswith("'=")


async def test_preview_reports_without_storing(served: Served) -> None:
    async with served.client() as c:
        r = await c.post("/v1/preview", json={"text": "Olá {n} €", "fields": {"n": 3}})
        long = await c.post("/v1/preview", json={"text": "ção" * 100, "encoding": "ucs2"})
    assert r.json() == {"encoding": "gsm7", "parts": 1, "units": 8,
                        "replacements": [["á", "a"]], "text": "Ola 3 €"}
    assert long.json()["parts"] == 5 and long.json()["encoding"] == "ucs2"
    assert served.message_count() == 0


async def test_operational_endpoints(served: Served) -> None:
    async with served.client(None) as c:
        health = await c.get("/healthz")
        ready = await c.get("/readyz")
        served.gateway.ready = False
        starting = await c.get("/readyz")
        await c.post("/v1/messages", json=OK)  # a 401, counted
        metrics_text = (await c.get("/metrics")).text
        head = await c.head("/healthz")
        wrong_method = await c.delete("/v1/messages")
        unknown = await c.get("/v2/anything")
    assert health.status_code == 200 and ready.status_code == 200
    assert starting.status_code == 503
    assert 'septet_http_requests_total{route="/v1/messages",status="401"}' in metrics_text
    assert head.status_code == 200 and head.content == b""
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET, POST"
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"


async def test_openapi_lists_exactly_the_served_routes(served: Served) -> None:
    async with served.client(None) as c:
        doc = (await c.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.1")
        served_routes = {(r.method.lower(), r.template) for r in ROUTES}
        documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
        assert documented == served_routes
        # and every documented route really answers something other than 404/405
        for method, path in documented:
            url = re.sub(r"\{[^}]+\}", "x", path)
            r = await c.request(method.upper(), url)
            assert r.status_code not in (405,), (method, path)
            assert r.status_code != 404 or path.endswith("{id}") or "{connector}" in path
    fields = set(doc["components"]["schemas"]["Message"]["properties"])
    from gateway.api.submit import ITEM_FIELDS
    assert fields == set(ITEM_FIELDS)


async def test_account_endpoint_shows_settings_without_secrets(served: Served) -> None:
    async with served.client() as c:
        doc = (await c.get("/v1/account")).json()
    assert doc["name"] == "alpha" and doc["default_country_prefix"] == "351"
    assert "callback_secret" not in json.dumps(doc).replace("callback_secret_set", "")


async def test_receipts_route_authenticates_parses_and_hands_over(served: Served) -> None:
    from tests.gateway.http.conftest import RECEIPT_TOKEN
    body = [{"id": "abc-1", "status": "delivered"}, {"id": "abc-2", "status": "failed",
                                                      "error_code": "34"}]
    async with served.client(None) as c:
        ok = await c.post("/v1/receipts/acme", json=body,
                          headers={"authorization": f"Bearer {RECEIPT_TOKEN}"})
        no_token = await c.post("/v1/receipts/acme", json=body)
        wrong = await c.post("/v1/receipts/acme", json=body, headers={"authorization": "Bearer x"})
        unknown = await c.post("/v1/receipts/nobody", json=body,
                               headers={"authorization": f"Bearer {RECEIPT_TOKEN}"})
        garbage = await c.post("/v1/receipts/acme", content=b"{",
                               headers={"authorization": f"Bearer {RECEIPT_TOKEN}",
                                        "content-type": "application/json"})
        down = await c.post("/v1/receipts/down", json=body,
                            headers={"authorization": f"Bearer {RECEIPT_TOKEN}"})
    assert ok.status_code == 200 and ok.json() == {"received": 2}
    (connector, receipts), = served.extra["receipts"]
    assert connector == "acme" and [r.carrier_id for r in receipts] == ["abc-1", "abc-2"]
    assert [r.state for r in receipts] == ["DELIVRD", "UNDELIV"]
    assert no_token.status_code == wrong.status_code == 401
    assert unknown.status_code == 404 and garbage.status_code == 400
    assert down.status_code == 503


async def test_real_gateway_saturation_answers_503_and_stores_nothing(tmp_path: Any) -> None:
    from gateway.app import CoreSettings, Gateway
    from gateway.http import HttpServer, ServerLimits
    from gateway.store import open_store
    from tests.gateway.http.conftest import _allow_all

    async with open_store(tmp_path / "db", sync=False) as store, trio.open_nursery() as n:
        gateway = Gateway(store, [], CoreSettings(max_outbox=2))  # actors not started
        api = create_api(gateway, ApiConfig(), check_callback=_allow_all)
        key = await AccountBook(store).create(Account("shop"))
        port = await n.start(HttpServer(api, ServerLimits()).serve, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"authorization": f"Bearer {key}"}) as c:
            first = await c.post("/v1/messages", json={"messages": [OK, OK]})
            refused = await c.post("/v1/messages", json=OK)
        assert first.status_code == 202
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"] == "urn:septet:problem:saturated"
        assert store.entries(b"messages") == 2
        n.cancel_scope.cancel()


async def test_idempotency_records_expire_after_the_ttl(tmp_path: Any) -> None:
    from gateway.idempotency import IdempotencyBook, Stored, request_hash
    from gateway.store import open_store

    clock = [1000.0]
    async with open_store(tmp_path / "db", sync=False) as store:
        book = IdempotencyBook(store, ttl_seconds=72 * 3600, now=lambda: clock[0])
        digest = request_hash("POST", "/v1/messages", b"{}")
        assert book.begin("a", "k", digest) is None
        await book.finish("a", "k", digest, Stored(202, "application/json", b"{}"))
        clock[0] += 72 * 3600 - 1
        assert book.begin("a", "k", digest) == Stored(202, "application/json", b"{}")
        assert await book.purge() == 0
        clock[0] += 2
        assert await book.purge() == 1
        assert book.begin("a", "k", request_hash("POST", "/v1/messages", b"[]")) is None


async def test_account_settings_can_be_changed_over_the_api(served: Served) -> None:
    async with served.client("beta") as c:
        r = await c.patch("/v1/account", json={"default_country_prefix": "44", "max_parts": 3,
                                                "callback_url": "https://crm.example/cb",
                                                "callback_secret": "s3cret"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert (doc["default_country_prefix"], doc["max_parts"]) == ("44", 3)
        assert doc["callback_url"] == "https://crm.example/cb" and doc["callback_secret_set"]
        sent = await c.post("/v1/messages", json={**OK, "to": "07911 123456"})
        assert sent.json()["to"] == "+447911123456"  # the new default prefix applies
        mo = await c.patch("/v1/account", json={"inbound_url": "https://crm.example/mo"})
        assert mo.status_code == 200 and mo.json()["inbound_url"] == "https://crm.example/mo"
        assert (await c.get("/v1/account")).json()["callback_url"] == "https://crm.example/cb"
        mo_refused = await c.patch("/v1/account", json={"inbound_url": "http://forbidden/"})
        bad = await c.patch("/v1/account", json={"encoding": "utf8", "colour": "red",
                                                  "max_parts": "3"})
        refused = await c.patch("/v1/account", json={"callback_url": "http://forbidden/"})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"colour", "max_parts"}
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "callback_url"
    assert mo_refused.status_code == 422
    assert mo_refused.json()["errors"][0]["field"] == "inbound_url"
    async with served.client("beta") as c:
        r = await c.patch("/v1/account", json={"encoding": "utf8", "default_country_prefix": "x"})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"encoding", "default_country_prefix"}


async def test_store_failure_answers_503_and_the_key_stays_usable(served: Served) -> None:
    from actors.errors import StoreError

    real = served.gateway.accept

    async def failing(messages: Any, *, also: Any = None) -> None:
        raise StoreError("disk full")

    served.gateway.accept = failing  # type: ignore[method-assign]
    async with served.client() as c:
        r = await c.post("/v1/messages", json=OK, headers={"idempotency-key": "k-store"})
        assert r.status_code == 503 and "retry-after" in r.headers
        assert "disk full" not in r.text  # internal reasons stay internal
        served.gateway.accept = real  # type: ignore[method-assign]
        again = await c.post("/v1/messages", json=OK, headers={"idempotency-key": "k-store"})
    assert again.status_code == 202 and served.message_count() == 1


async def test_concurrent_duplicates_of_one_key_commit_once(served: Served) -> None:
    served.gateway.hold = trio.Event()
    statuses: list[int] = []

    async def post() -> None:
        async with served.client() as c:
            r = await c.post("/v1/messages", json=OK, headers={"idempotency-key": "race"})
            statuses.append(r.status_code)

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(post)
        with trio.fail_after(5):
            while len(statuses) < 4:
                await trio.sleep(0.01)
        served.gateway.hold.set()
    assert sorted(statuses) == [202, 409, 409, 409, 409]
    assert served.message_count() == 1

"""/v1/optouts over a real HTTP server on 127.0.0.1 and a real LMDB store: add (idempotent),
read, list with cursors and filters, remove; numbers normalised as submissions' are; every
refusal a problem document naming the field; one account never sees another's list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from gateway.optouts import OptOutList
from tests.gateway._campaign_server import serve_campaigns

A = "+351912345678"
A_PATH = "/v1/optouts/%2B351912345678"


def problem(r: httpx.Response) -> tuple[int, list[str]]:
    assert r.headers["content-type"] == "application/problem+json", r.text
    return r.status_code, [e["field"] for e in r.json().get("errors", [])]


async def test_add_read_list_remove(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db", now=lambda: 1_800_000_000.0) as s, \
            s.client() as c:
        r = await c.put(A_PATH)
        assert r.status_code == 201
        assert r.json() == {"number": A, "opted_out_at": "2027-01-15T08:00:00.000Z",
                            "source": "api"}
        again = await c.put("/v1/optouts/00351912345678", json={"source": "import"})
        assert again.status_code == 200 and again.json() == r.json()  # first record stands
        r = await c.put("/v1/optouts/912345679", json={"source": "crm"})  # alpha: prefix 351
        assert r.status_code == 201 and r.json()["number"] == "+351912345679"
        r = await c.put("/v1/optouts/+351912345670", content=b"",
                        headers={"content-type": "application/json"})
        assert r.status_code == 201  # an empty body is no body
        assert (await c.get(A_PATH)).json()["source"] == "api"
        assert (await c.get("/v1/optouts/912345679")).json()["source"] == "crm"
        assert problem(await c.get("/v1/optouts/912345671")) == (404, [])

        page = (await c.get("/v1/optouts", params={"limit": 2})).json()
        assert [o["number"] for o in page["optouts"]] == ["+351912345670", A]
        assert page["next_cursor"] == A
        rest = (await c.get(f"/v1/optouts?limit=2&cursor={A}")).json()  # "+" unencoded
        assert [o["number"] for o in rest["optouts"]] == ["+351912345679"]
        assert rest["next_cursor"] is None
        crm = (await c.get("/v1/optouts", params={"source": "crm"})).json()
        assert [o["number"] for o in crm["optouts"]] == ["+351912345679"]

        assert (await c.delete(A_PATH)).status_code == 204
        assert problem(await c.delete(A_PATH)) == (404, [])
        assert problem(await c.get(A_PATH)) == (404, [])
        assert not OptOutList(s.store).opted_out("alpha", A)
        assert OptOutList(s.store).opted_out("alpha", "+351912345679")


async def test_refusals_name_the_field(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c, \
            s.client("beta") as beta:
        assert problem(await c.put("/v1/optouts/12")) == (422, ["path:number"])
        assert problem(await c.put("/v1/optouts/%2B3519abc")) == (422, ["path:number"])
        assert problem(await c.get("/v1/optouts/%FF%FE")) == (422, ["path:number"])
        assert problem(await beta.put("/v1/optouts/912345678")) == (422, ["path:number"])  # no prefix
        assert problem(await c.put(A_PATH, json={"source": "Not Ok"})) == (422, ["source"])
        assert problem(await c.put(A_PATH, json={"sauce": "api"})) == (422, ["sauce"])
        assert problem(await c.put(A_PATH, json=["api"])) == (422, ["body"])
        assert problem(await c.put(A_PATH, content=b"{", headers={
            "content-type": "application/json"}))[0] == 400
        assert problem(await c.get("/v1/optouts?limit=0")) == (422, ["query:limit"])
        assert problem(await c.get("/v1/optouts?cursor=abc")) == (422, ["query:cursor"])
        assert problem(await c.get("/v1/optouts?since=yesterday")) == (422, ["query:since"])
        assert problem(await c.get("/v1/optouts?color=red")) == (422, ["query:color"])
        async with httpx.AsyncClient(base_url=s.url) as anonymous:
            assert problem(await anonymous.put(A_PATH))[0] == 401
            assert problem(await anonymous.get("/v1/optouts"))[0] == 401
        assert s.store.entries(b"optouts") == 0  # nothing refused was stored


async def test_one_account_never_sees_or_changes_anothers_list(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as alpha, \
            s.client("beta") as beta:
        assert (await alpha.put(A_PATH)).status_code == 201
        assert problem(await beta.get(A_PATH)) == (404, [])
        assert problem(await beta.delete(A_PATH)) == (404, [])
        assert (await beta.get("/v1/optouts")).json() == {"optouts": [], "next_cursor": None}
        assert (await beta.put(A_PATH, json={"source": "import"})).status_code == 201
        assert (await beta.delete(A_PATH)).status_code == 204
        doc: Any = (await alpha.get(A_PATH)).json()
        assert doc["source"] == "api"  # alpha's record untouched by beta's add and remove
        lists = OptOutList(s.store)
        assert lists.opted_out("alpha", A) and not lists.opted_out("beta", A)


async def test_a_list_is_added_in_one_request(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c, \
            s.client("beta") as beta:
        assert (await c.put(A_PATH)).status_code == 201
        r = await c.post("/v1/optouts", json={"numbers": [
            A, "912345679", "00351912345670", "12", 5, "+351912345670"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"added": 2, "already": 2, "rejected": [
            {"field": "numbers[3]", "reason": "is not a valid number in its country's "
                                              "numbering plan"},
            {"field": "numbers[4]", "reason": "must be a phone number (a string)"}]}
        page = (await c.get("/v1/optouts", params={"source": "import"})).json()
        assert [o["number"] for o in page["optouts"]] == ["+351912345670", "+351912345679"]
        assert (await c.get(A_PATH)).json()["source"] == "api"  # already there: unchanged
        r = await beta.post("/v1/optouts", json={"numbers": ["912345678"], "source": "crm"})
        assert problem(r) == (422, ["numbers[0]"])  # beta has no default prefix: none readable
        assert problem(await c.post("/v1/optouts", json={"numbers": []})) == (422, ["numbers"])
        assert problem(await c.post("/v1/optouts", json={"numbers": [A], "source": "Bad",
                                                         "x": 1})) == (422, ["x", "source"])
        assert problem(await c.post("/v1/optouts", json={"numbers": [A] * 10_001}))[1] == [
            "numbers"]
        assert (await beta.get("/v1/optouts")).json()["optouts"] == []

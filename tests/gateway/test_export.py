"""``septet export``: an account's history as CSV, filtered like ``GET /v1/messages``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import trio

from gateway import cli
from gateway.store import open_store
from tests.gateway.http.conftest import start


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store holding 12 messages of account alpha (campaigns c0/c1) and 1 of beta."""
    monkeypatch.setenv("SEPTET_STORE__PATH", str(tmp_path / "db"))
    monkeypatch.setenv("SEPTET_STORE__SYNC", "false")

    async def fill() -> None:
        async with open_store(tmp_path / "db", sync=False) as store, \
                trio.open_nursery() as nursery:
            served = await start(nursery, store)
            async with served.client() as c:
                for i in range(12):
                    r = await c.post("/v1/messages", json={
                        "to": f"91234560{i % 3}", "from": "Shop", "campaign": f"c{i % 2}",
                        "text": f"=code {i}" if i == 0 else f"code {i}"})
                    assert r.status_code == 202
            async with served.client("beta") as c:
                r = await c.post("/v1/messages", json={"to": "+351912345600", "from": "B",
                                                       "text": "other account"})
                assert r.status_code == 202
            nursery.cancel_scope.cancel()

    trio.run(fill)
    return tmp_path


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_exports_the_whole_history_of_one_account(history: Path,
                                                  capsysbinary: pytest.CaptureFixture[bytes]
                                                  ) -> None:
    assert cli.main(["export", "alpha"]) == 0
    rows = _rows(capsysbinary.readouterr().out.decode())
    assert [r["text"] for r in rows] == ["'=code 0"] + [f"code {i}" for i in range(1, 12)]
    assert {r["state"] for r in rows} == {"ACCEPTED"}
    assert rows[1]["to"] == "+351912345601"  # alpha's default prefix applied at submit


def test_filters_are_those_of_the_api(history: Path, capsysbinary: pytest.CaptureFixture[bytes]
                                      ) -> None:
    out = history / "c1.csv"
    assert cli.main(["export", "alpha", "--campaign", "c1", "--to", "912345601",
                     "-o", str(out)]) == 0
    assert capsysbinary.readouterr().out == b""
    rows = _rows(out.read_text())
    assert [r["text"] for r in rows] == ["code 1", "code 7"]
    assert cli.main(["export", "alpha", "--status", "DELIVERED"]) == 0
    assert _rows(capsysbinary.readouterr().out.decode()) == []
    assert cli.main(["export", "alpha", "--text", "CODE 1"]) == 0
    assert len(_rows(capsysbinary.readouterr().out.decode())) == 3  # 1, 10, 11


def test_bad_filters_are_named_and_nothing_is_written(
        history: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.main(["export", "alpha", "--status", "LOST", "--since", "yesterday"]) == 2
    captured = capsysbinary.readouterr()
    assert captured.out == b""
    err = captured.err.decode()
    assert "--status: must be among" in err and "--since: must be RFC 3339" in err
    assert cli.main(["export", "nobody"]) == 2
    assert "no account named 'nobody'" in capsysbinary.readouterr().err.decode()


def test_a_missing_store_is_an_error_not_a_new_store(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEPTET_STORE__PATH", str(tmp_path / "absent"))
    assert cli.main(["export", "alpha"]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "absent").exists()


def test_a_sparse_filter_reads_in_bounded_steps(history: Path) -> None:
    from gateway.api.query import SearchQuery
    from gateway.export import pages

    async def read() -> list[list[str]]:
        async with open_store(history / "db", sync=False) as store:
            steps = pages(store, "alpha", SearchQuery(text="code 11"), max_scan=4)
            return [[v.message.text for v in views] for views in steps]

    # 12 messages read 4 at a time: two empty steps before the match; the last page was full,
    # so one more (empty) read finds the end
    assert trio.run(read) == [[], [], ["code 11"], []]

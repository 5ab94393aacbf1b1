"""Bulk file import through a real drop folder in tmp_path and a real LMDB store."""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

import gateway.importer  # noqa: F401  (registers its databases before open_store)
from gateway.app import Gateway
from gateway.campaigns import Campaigns
from gateway.importer import Importer, watch
from gateway.store import open_store

T0 = 1_795_000_000.0  # 2026-11-18 09:06:40 UTC
TODAY = "181126"
GOOD = "mobile_phone;name;message\n912345678;Ana;Hello Ana\n+34612345678;Bo;Hi Bo\n"


@pytest.fixture
async def importer(tmp_path: Path) -> AsyncIterator[Importer]:
    async with open_store(tmp_path / "db", sync=False) as store:
        svc = Campaigns(store, Gateway(store, []), now=lambda: T0)
        yield Importer(svc, tmp_path / "drop", "acme", "Septet", prefix="351", now=lambda: T0)


def drop(imp: Importer, name: str, content: str | bytes = GOOD) -> Path:
    path = imp.folder / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def test_t0_is_the_date_the_names_use() -> None:
    assert datetime.fromtimestamp(T0, UTC).strftime("%d%m%y") == TODAY


BAD_NAMES = [
    (f"mailing_{TODAY}.csv", "the name must be"),
    (f"mail_{TODAY}_1.csv", "the name must be"),
    (f"mailing_{TODAY}_1.xls", "the name must be"),
    (f"mailing_{TODAY}_x1.csv", "the name must be"),
    ("mailing_18112026_1.csv", "the name must be"),
    ("mailing_321126_1.csv", "not a valid DDMMYY"),
    ("mailing_171126_1.csv", "not today"),
    (f"mailing_{TODAY}_1_z9.csv", "unknown parameter _z9"),
    (f"mailing_{TODAY}_1_cA_cB.csv", "_c given twice"),
    (f"mailing_{TODAY}_1_c.csv", "expected campaign code"),
    (f"mailing_{TODAY}_1_dhello world.csv", "expected description"),
    (f"mailing_{TODAY}_1_i181126090.csv", "expected start"),
    (f"mailing_{TODAY}_1_i3111261200.csv", "not a valid date and time"),
    (f"mailing_{TODAY}_1_q00020.csv", "PP > 0"),
    (f"mailing_{TODAY}_1_q1520.csv", "expected shaping"),
    (f"mailing_{TODAY}_1_q15000.csv", "MMM > 0"),
    (f"mailing_{TODAY}_1_xabc.csv", "expected re-contact"),
    (f"mailing_{TODAY}_1_x0.csv", "at least 1 hour"),
    (f"mailing_{TODAY}_1_LE1711261200.csv", "deadline is not after"),
    (f"mailing_{TODAY}_1_i1811261500_LE1811261400.csv", "deadline is not after"),
    (f"mailing_{TODAY}_1_hx.csv", "expected clean-up flag"),
]


@pytest.mark.parametrize(("name", "reason"), BAD_NAMES)
async def test_malformed_names_are_discarded_with_a_reason(importer: Importer, name: str,
                                                           reason: str) -> None:
    path = drop(importer, name)
    assert await importer.process(path) == "discarded"
    assert not path.exists()
    assert (importer.folder / "discarded" / name).exists()
    report = (importer.folder / "discarded" / f"{name}.error.txt").read_text()
    assert reason in report
    assert importer.campaigns.of_account("acme") == []


BAD_CONTENT = [
    ("", "empty"),
    ("email;name\nx@example.com;Ana\n", "no phone column"),
    ("phone;message\n", "no recipient rows"),
    ("phone;name\n912345678;Ana\n", "no message column"),
    ("phone;message\n912345678;hi\nabc;hi\n12;hi\n", "2 invalid numbers (add _h"),
    (b"phone;message\n\xff\xfe912;hi\n", "not UTF-8"),
]


@pytest.mark.parametrize(("content", "reason"), BAD_CONTENT)
async def test_bad_content_is_discarded_with_a_reason(importer: Importer, content: str | bytes,
                                                      reason: str) -> None:
    name = f"mailing_{TODAY}_3.csv"
    assert await importer.process(drop(importer, name, content)) == "discarded"
    assert reason in (importer.folder / "discarded" / f"{name}.error.txt").read_text()
    assert importer.campaigns.of_account("acme") == []


async def test_a_good_file_becomes_a_campaign_with_its_name_parameters(importer: Importer
                                                                       ) -> None:
    name = f"mailing_{TODAY}_7_cSPRING_dPromo-1_i1811261500_q15020_x36_LE1911261200_h.csv"
    content = GOOD + "not-a-number;Cy;Hi Cy\n"
    assert await importer.process(drop(importer, name, content)) == "processed"
    assert (importer.folder / "processed" / name).exists()
    report = (importer.folder / "processed" / f"{name}.report.txt").read_text()
    assert "line 4" in report
    (c,) = importer.campaigns.of_account("acme")
    start = datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp()
    assert (c.name, c.description, c.send_at, c.slice_percent, c.slice_every) == (
        "SPRING", "Promo-1", start, 15, 20 * 60)
    assert (c.recontact_hours, c.not_after, c.rows, c.state, c.sealed) == (
        36, datetime(2026, 11, 19, 12, 0, tzinfo=UTC).timestamp(), 3, "scheduled", True)
    # the same sequence again today is refused, whatever the rest of the name
    again = drop(importer, f"mailing_{TODAY}_7.csv")
    assert await importer.process(again) == "discarded"
    assert "sequence 7 was already used today" in (
        importer.folder / "discarded" / f"mailing_{TODAY}_7.csv.error.txt").read_text()


async def test_zip_and_headerless_txt(importer: Importer) -> None:
    zname = importer.folder / f"mailing_{TODAY}_1.zip"
    with zipfile.ZipFile(zname, "w") as z:
        z.writestr("list.csv", GOOD)
    assert await importer.process(zname) == "processed"
    txt = drop(importer, f"mailing_{TODAY}_2.txt", "912345678;Hello\n+34612345678,Hola\n")
    assert await importer.process(txt) == "processed"
    two = importer.folder / f"mailing_{TODAY}_4.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.csv", GOOD)
        z.writestr("b.csv", GOOD)
    assert await importer.process(two) == "discarded"
    svc = importer.campaigns
    await svc.step()
    texts = sorted(svc.store.get_message(ref).message.text
                   for c in svc.of_account("acme") for _, _, ref in svc.rows(c.name))
    assert texts == ["Hello", "Hello Ana", "Hi Bo", "Hola"]


async def test_the_drop_folder_is_watched(importer: Importer) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: watch(importer, poll=0.02,
                                                      task_status=task_status))
        drop(importer, f"mailing_{TODAY}_9.csv")
        drop(importer, "notes.txt", "hello")
        with trio.fail_after(10):
            while not (importer.folder / "discarded" / "notes.txt.error.txt").exists() or \
                    not (importer.folder / "processed" / f"mailing_{TODAY}_9.csv").exists():
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert [c.name for c in importer.campaigns.of_account("acme")] == [f"mailing_{TODAY}_9"]

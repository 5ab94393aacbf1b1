"""Bulk file import through a real drop folder in tmp_path and a real LMDB store."""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.importer  # noqa: F401  (registers its databases before open_store)
from gateway.app import Gateway
from gateway.campaigns import Campaigns
from gateway.importer import Importer, parse_name, watch
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
                   for c in svc.of_account("acme") for _, _, ref in svc.rows(c.account, c.name))
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


def test_septet_import_command(tmp_path: Path) -> None:
    from gateway import cli

    config = tmp_path / "septet.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "db"}"\nsync = false\n'
                      '[importer]\naccount = "acme"\ndefault_prefix = "351"\n')
    today = datetime.now(UTC).strftime("%d%m%y")
    good = tmp_path / f"mailing_{today}_1_cCLI.csv"
    good.write_text(GOOD)
    assert cli.main(["import", str(good), "--config", str(config)]) == 0
    assert (tmp_path / "processed" / good.name).exists()
    bad = tmp_path / f"mailing_{today}_1.csv"  # the same sequence again
    bad.write_text(GOOD)
    assert cli.main(["import", str(bad), "--config", str(config)]) == 1
    assert (tmp_path / "discarded" / f"{bad.name}.error.txt").exists()


@settings(max_examples=100, deadline=None)
@given(seq=st.integers(0, 999_999), code=st.from_regex(r"[A-Za-z0-9-]{1,20}", fullmatch=True),
       pct=st.integers(1, 99), every=st.integers(1, 999), hours=st.integers(1, 9999),
       cleanup=st.booleans(), ext=st.sampled_from(["csv", "txt", "zip", "CSV"]))
def test_every_well_formed_name_parses_back(seq: int, code: str, pct: int, every: int,
                                            hours: int, cleanup: bool, ext: str) -> None:
    name = (f"mailing_{TODAY}_{seq}_c{code}_q{pct:02d}{every:03d}_x{hours}"
            f"_i1811261000_LE1911261000{'_h' if cleanup else ''}.{ext}")
    got = parse_name(name, datetime.fromtimestamp(T0, UTC).date(), T0)
    assert (got.seq, got.campaign, got.slice_percent, got.slice_every) == (
        seq, code, pct, every * 60)
    assert (got.recontact_hours, got.cleanup, got.ext) == (hours, cleanup, ext.lower())
    assert got.start == datetime(2026, 11, 18, 10, 0, tzinfo=UTC).timestamp()


async def test_the_campaign_code_is_unique_per_account_only(importer: Importer) -> None:
    from gateway.campaigns import Campaign

    svc = importer.campaigns
    await svc.create(Campaign("SPRING", "other", "Septet", "hi"))  # another account's SPRING
    path = drop(importer, f"mailing_{TODAY}_1_cSPRING.csv")
    assert await importer.process(path) == "processed"
    mine = svc.get("acme", "SPRING")
    assert mine is not None and (mine.rows, mine.sealed) == (2, True)
    theirs = svc.get("other", "SPRING")
    assert theirs is not None and theirs.rows == 0 and theirs.source == "api"
    # the same code again in the same account is refused (another sequence, same day)
    path = drop(importer, f"mailing_{TODAY}_2_cSPRING.csv")
    assert await importer.process(path) == "discarded"
    report = (importer.folder / "discarded" / f"{path.name}.error.txt").read_text()
    assert "SPRING" in report and "already exists" in report

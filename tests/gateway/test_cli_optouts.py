"""``septet optouts import|export``: a STOP list in from a file and out as CSV, over a real LMDB
store in tmp_path, through ``gateway.cli.main`` as an operator runs it; then the pipeline
refuses an imported number, on a stopped gateway and beside a serving one."""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import _cli_optouts, cli
from gateway.optouts import DB, OptOutList
from gateway.store import open_store
from gateway.validation import NumberNormaliser
from tests.fakes import ScriptedCarrier
from tests.gateway._campaign_server import serve_campaigns
from tests.gateway.test_optouts_e2e import send

ROOT = Path(__file__).resolve().parents[2]
HEADER = ["number", "added_at", "source"]


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> Path:
    """A store with account ``shop`` (default prefix 351) and ``bare`` (no prefix)."""
    monkeypatch.setenv("SEPTET_STORE__PATH", str(tmp_path / "db"))
    monkeypatch.setenv("SEPTET_STORE__SYNC", "false")
    assert cli.main(["accounts", "create", "shop", "--prefix", "351"]) == 0
    assert cli.main(["accounts", "create", "bare"]) == 0
    capsys.readouterr()
    return tmp_path / "db"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def export(capsys: pytest.CaptureFixture[str], account: str) -> list[list[str]]:
    assert cli.main(["optouts", "export", "--account", account]) == 0
    return list(csv.reader(io.StringIO(capsys.readouterr().out)))


def entries(path: Path) -> int:
    async def count() -> int:
        async with open_store(path, sync=False) as store:
            return int(store.entries(DB))
    return trio.run(count)


def test_import_then_export_round_trips(store_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "list.csv",
              "number,name,added_at,source\n"
              "+351912345678,Ana,2026-01-02T03:04:05Z,crm\n"
              "912 345 679,Rui,,\n"             # national: the account's prefix 351
              "00351912345680,,1700000000,\n")  # Unix seconds
    before = time.time()
    assert cli.main(["optouts", "import", f, "--account", "shop", "--source", "legacy"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "septet: shop: 3 added, 0 already present, 0 refused"
    assert out.err == ""
    rows = export(capsys, "shop")
    assert rows[0] == HEADER
    assert rows[1] == ["+351912345678", "2026-01-02T03:04:05.000Z", "crm"]
    assert rows[3] == ["+351912345680", "2023-11-14T22:13:20.000Z", "legacy"]
    assert rows[2][0::2] == ["+351912345679", "legacy"]  # no added_at: the time of the import
    assert rows[2][1] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(before)))
    # the export is an import file: into another account, it exports the same rows
    out_file = tmp_path / "export.csv"
    assert cli.main(["optouts", "export", "--account", "shop", "-o", str(out_file)]) == 0
    assert list(csv.reader(io.StringIO(out_file.read_text()))) == rows
    assert cli.main(["optouts", "import", str(out_file), "--account", "bare"]) == 0
    capsys.readouterr()
    assert export(capsys, "bare") == rows


def test_importing_twice_changes_nothing(store_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cli_optouts, "BATCH", 2)  # several writes, one partial
    f = write(tmp_path, "plain.txt", "".join(f"+35191234567{i}\r\n" for i in range(5)))
    assert cli.main(["optouts", "import", f, "--account", "shop"]) == 0
    assert "5 added, 0 already present, 0 refused" in capsys.readouterr().out
    first = export(capsys, "shop")
    assert [r[2] for r in first[1:]] == ["import"] * 5
    assert cli.main(["optouts", "import", f, "--account", "shop", "--source", "other"]) == 0
    assert "0 added, 5 already present, 0 refused" in capsys.readouterr().out
    assert export(capsys, "shop") == first  # first record kept: time and source unchanged
    assert entries(store_dir) == 5


def test_refused_lines_are_named_by_line_number_and_skipped(
        store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "bad.csv",
              "\n"                                       # 1: blank, skipped silently
              "Number;Source;Added_At\n"                 # 2: header (semicolons, any case)
              "+351912345678;crm;\n"                     # 3
              "hello;;\n"                                # 4
              "\n"                                       # 5
              "912345679;;\n"                            # 6: no default prefix on bare
              "+351912345680;Not A Label;\n"             # 7
              "+351912345681;;2026-01-01T00:00:00\n"     # 8: no offset
              "+351912345682\n"                          # 9: a short row is fine
              "+12;;\n")                                 # 10
    assert cli.main(["optouts", "import", f, "--account", "bare"]) == 1
    out = capsys.readouterr()
    assert out.out.strip() == "septet: bare: 2 added, 0 already present, 5 refused"
    assert out.err.splitlines() == [
        "septet: bad.csv:4: number must not contain letters",
        ("septet: bad.csv:6: number has no country prefix (+CC) and no default country "
         "prefix is set"),
        ("septet: bad.csv:7: source must be a label of 1 to 32 characters: a-z first, then "
         "a-z, 0-9, _ . -"),
        "septet: bad.csv:8: added_at needs a UTC offset (Z or +hh:mm)",
        "septet: bad.csv:10: number is not a valid number in its country's numbering plan"]
    assert "912345679" not in out.err  # lines are named, numbers are not echoed
    assert [r[0] for r in export(capsys, "bare")[1:]] == ["+351912345678", "+351912345682"]


def test_an_unknown_account_is_an_error_and_writes_nothing(
        store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "list.txt", "+351912345678\n")
    assert cli.main(["optouts", "import", f, "--account", "nobody"]) == 2
    assert "no account named 'nobody'" in capsys.readouterr().err
    out_file = tmp_path / "out.csv"
    assert cli.main(["optouts", "export", "--account", "nobody", "-o", str(out_file)]) == 2
    assert not out_file.exists()
    assert entries(store_dir) == 0


def test_a_header_without_number_or_a_bad_source_writes_nothing(
        store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "list.csv", "phone,date\n+351912345678,\n")
    assert cli.main(["optouts", "import", f, "--account", "shop"]) == 2
    assert "header row naming a number column" in capsys.readouterr().err
    g = write(tmp_path, "list.txt", "+351912345678\n")
    assert cli.main(["optouts", "import", g, "--account", "shop", "--source", "CRM!"]) == 2
    assert cli.main(["optouts", "import", str(tmp_path / "missing"), "--account", "shop"]) == 2
    assert entries(store_dir) == 0


def test_help_states_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["optouts", "import", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "exit status" in text and "1  some lines were refused" in text


def test_a_number_imported_on_a_stopped_gateway_is_not_sent(
        store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # serve_campaigns' account alpha (prefix 351), made here first so the list can be loaded
    assert cli.main(["accounts", "create", "alpha", "--prefix", "351"]) == 0
    f = write(tmp_path, "stop.txt", "912345678\n")
    assert cli.main(["optouts", "import", f, "--account", "alpha"]) == 0

    async def serve_and_send() -> None:
        async with serve_campaigns(store_dir, carriers=[ScriptedCarrier("pt")]) as s, \
                s.client() as alpha, s.client("beta") as beta:
            doc = await send(alpha, "+351912345678")
            assert (doc["state"], doc["code"]) == ("NOT_SENT", "opted_out")
            assert (await send(alpha, "+351912345679"))["state"] == "DELIVERED"
            assert (await send(beta, "+351912345678"))["state"] == "DELIVERED"

    trio.run(serve_and_send)


async def test_an_import_beside_a_serving_gateway_is_enforced(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db", carriers=[ScriptedCarrier("pt")]) as s, \
            s.client() as alpha:
        assert (await send(alpha, "+351912345678"))["state"] == "DELIVERED"
        f = write(tmp_path, "stop.csv", "number\n+351912345678\n")
        env = {**os.environ, "SEPTET_STORE__PATH": str(tmp_path / "db"),
               "SEPTET_STORE__SYNC": "false"}
        done = await trio.run_process(  # another process on the same LMDB store
            [sys.executable, "-m", "gateway.cli", "optouts", "import", f, "--account", "alpha"],
            cwd=ROOT, env=env, capture_stdout=True, capture_stderr=True, check=False)
        assert done.returncode == 0, done.stderr
        assert b"1 added" in done.stdout
        assert (await alpha.get("/v1/optouts/%2B351912345678")).json()["source"] == "import"
        # what [optouts] refresh_seconds does for this process at most 5 s later
        assert isinstance(s.gateway.optouts, OptOutList)
        s.gateway.optouts.refresh()
        doc = await send(alpha, "+351912345678")
        assert (doc["state"], doc["code"]) == ("NOT_SENT", "opted_out")


# ------------------------------------------------------------------------------ pure reading

READING = _cli_optouts.Reading("351", "import", 1_000.0, NumberNormaliser(100))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("0123456789+ x\t"), max_size=16),
                max_size=12))
def test_a_plain_list_gives_one_result_per_non_blank_line(lines: list[str]) -> None:
    text = [line + "\n" for line in lines if "\t" not in line.strip()]  # no column separators
    got = list(_cli_optouts.read_entries(text, READING))
    assert [g.line for g in got] == [i for i, line in enumerate(text, 1) if line.strip()]
    for g in got:
        if isinstance(g, _cli_optouts.Entry):
            assert g.number.startswith("+") and (g.at, g.source) == (1_000.0, "import")


def test_a_csv_row_spanning_lines_is_read_and_numbered_from_its_start() -> None:
    lines = ['number,source\n', '"+351912345678",crm\n', '"+3519\n', '12345679",x\n',
             '+351912345680,\n']
    got = list(_cli_optouts.read_entries(lines, READING))
    assert [(g.line, type(g).__name__) for g in got] == [
        (2, "Entry"), (3, "Refused"), (5, "Entry")]

"""The application packages type-check under ``mypy --strict`` ([tool.mypy] in pyproject.toml).

STYLE.md asks for typed code; this keeps it true at every commit rather than once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_finds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api")
    monkeypatch.chdir(ROOT)  # the [tool.mypy] files are relative to the repository
    out, err, status = api.run(["--config-file", os.fspath(ROOT / "pyproject.toml"),
                                "--cache-dir", os.fspath(tmp_path / "cache")])
    assert status == 0, out + err

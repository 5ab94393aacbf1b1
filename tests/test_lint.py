"""The repository is clean under ``ruff check`` ([tool.ruff] in pyproject.toml).

As tests/test_types.py does for ``mypy --strict``: clean at every commit rather than once. A
finding is fixed, or kept with a ``# noqa: RULE`` that says why (a hot path, a frozen default).
ruff comes with the dev extra (``make test`` installs it), pinned because its default rules
grow from one release to the next."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing() -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip(f"ruff is not installed in {sys.executable}: "
                    "install the dev extra (pip install -e '.[dev]'), as `make test` does")
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
         str(ROOT)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    version = importlib.metadata.version("ruff")
    assert done.returncode == 0, (
        f"ruff {version} (pyproject.toml pins the one the code is clean under):\n"
        f"{done.stdout}{done.stderr}")

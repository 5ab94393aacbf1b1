"""Package re-exports (STYLE.md §7): ``__all__`` lists exactly the public names."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["gateway.http", "gateway.api"])
def test_all_matches_the_public_namespace(name: str) -> None:
    module = importlib.import_module(name)
    public = {n for n, v in vars(module).items()
              if not n.startswith("_") and not getattr(v, "__name__", "").startswith(name + ".")
              and n not in ("annotations",)}
    assert set(module.__all__) == public

"""actors.shaping's public names: ``__all__`` matches what the module offers."""

from __future__ import annotations

from actors import shaping


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {n for n in vars(shaping) if not n.startswith("_") and n != "annotations"}
    assert set(shaping.__all__) == public

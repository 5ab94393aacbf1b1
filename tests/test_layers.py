"""The dependency direction of STYLE.md §1, checked on the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "codec": {"trio", "msgpack", "lmdb", "httpx", "httptools", "logging", "actors", "adapters",
              "gateway", "prometheus_client"},
    "actors": {"adapters", "gateway", "lmdb", "httpx", "httptools"},
    "adapters": {"gateway"},
}
ADAPTERS_MAY_IMPORT_FROM_ACTORS = {"actors.messages", "actors.ports", "actors.errors"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_downward(package: str) -> None:
    bad = []
    for path in _modules(package):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
            if package == "adapters" and top == "actors" and not any(
                    name == a or name.startswith(a + ".") for a in ADAPTERS_MAY_IMPORT_FROM_ACTORS):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []

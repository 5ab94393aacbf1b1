"""Routing by destination prefix with fail-over. Pure: no I/O, no trio.

A route maps an E.164 prefix (digits, ``+`` optional) to connectors in preference order;
the longest matching prefix wins and the empty prefix is the default. :func:`choose` picks
the first connector that is ready and not excluded (a connector that just failed a part
transiently is excluded for that part's next attempt, which is the fail-over).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["RouteTable", "choose"]


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Prefix → connectors (in preference order). Build with :meth:`from_mapping`."""

    routes: tuple[tuple[str, tuple[str, ...]], ...]  # longest prefix first

    @classmethod
    def from_mapping(cls, routes: Mapping[str, Iterable[str]]) -> RouteTable:
        """``{"+351": ["smpp-pt", "http-eu"], "": ["http-eu"]}`` (``""`` is the default)."""
        norm = {p.lstrip("+"): tuple(c) for p, c in routes.items()}
        return cls(tuple(sorted(norm.items(), key=lambda kv: -len(kv[0]))))

    def candidates(self, to: str) -> tuple[str, ...]:
        """Connectors for destination ``to`` in preference order (empty: no route)."""
        routes = self.routes
        if routes and not routes[0][0]:  # longest first: only the default route (per part)
            return routes[0][1]
        digits = to.lstrip("+")
        for prefix, connectors in self.routes:
            if digits.startswith(prefix):
                return connectors
        return ()


def choose(
    candidates: Iterable[str], ready: Callable[[str], bool], exclude: Iterable[str] = ()
) -> str | None:
    """The first ready candidate not in ``exclude``; else the first ready one; else None."""
    cands = list(candidates)
    excluded = set(exclude)
    for name in cands:
        if name not in excluded and ready(name):
            return name
    for name in cands:
        if ready(name):
            return name
    return None

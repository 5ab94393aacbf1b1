"""RouteReadiness: the rate limiter's view of whether a destination's route has a connector up."""

from __future__ import annotations

from actors.routing import RouteTable
from gateway.app import RouteReadiness
from tests.fakes import ScriptedCarrier


class Counting(ScriptedCarrier):
    """A carrier that counts how often its readiness is asked."""

    asked = 0

    @property
    def ready(self) -> bool:
        Counting.asked += 1
        return self.ready_flag


def _carriers() -> dict[str, Counting]:
    out = {}
    for name in ("uk", "uk-backup", "pt"):
        c = out[name] = Counting(name)
        c._sink = object()  # type: ignore[assignment]  # "running"
    return out


ROUTES = RouteTable.from_mapping({"+44": ["uk", "uk-backup"], "+351": ["pt"], "+1": ["us"]})


def test_down_routes_fail_over_and_no_route_is_left_to_the_dispatcher() -> None:
    carriers = _carriers()
    wait = RouteReadiness(ROUTES, carriers, shortest=0.5, longest=30.0)
    assert wait("+447700900001", 0.0) == 0.0 == wait("+351912345678", 0.0)
    carriers["uk"].ready_flag = False
    assert wait("+447700900001", 1.0) == 0.0  # the backup is up
    carriers["uk-backup"].ready_flag = False
    assert wait("+447700900001", 2.0) == 0.5  # just went down: look again soon
    assert wait("+351912345678", 2.0) == 0.0
    assert wait("+447700900001", 12.0) == 10.0  # as long as it has been down...
    assert wait("+447700900001", 500.0) == 30.0  # ...up to the longest
    assert wait("+12025550100", 500.0) == 0.5  # "us" is not a configured connector
    assert wait("+8613800000000", 500.0) == 0.0  # no route: on, to end routing_failed
    carriers["uk-backup"].ready_flag = True
    assert wait("+447700900001", 501.0) == 0.0


def test_readiness_is_looked_up_once_an_interval_and_again_if_the_clock_steps_back() -> None:
    carriers = _carriers()
    wait = RouteReadiness(ROUTES, carriers, every=0.05)
    Counting.asked = 0
    for i in range(100):
        assert wait("+447700900001", 10.0 + i * 0.0001) == 0.0  # all inside one interval
    assert Counting.asked == len(carriers)
    carriers["pt"].ready_flag = False
    assert wait("+351912345678", 10.04) == 0.0  # not yet looked again
    assert wait("+351912345678", 10.06) > 0.0
    carriers["pt"].ready_flag = True
    assert wait("+351912345678", 5.0) == 0.0  # stepped back: looked again at once

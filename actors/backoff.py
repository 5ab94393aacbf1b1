"""Exponential back-off with a cap and optional jitter: the one retry-wait formula of actors.

Wait number ``attempt`` (1 = the first retry) is ``min(cap, base * factor ** (attempt - 1))``,
scaled by a factor drawn uniformly from ``[1 - jitter, 1 + jitter]`` with ``rand`` in [0, 1)
(so peers that failed together do not retry together), and never more than ``cap``. Pure: the
caller passes the random number, so tests need no seed.

Users: the dispatcher's submit retries (``dispatcher.RetryPolicy``: factor 2, no jitter) and
the notifier's callback retries (``callbacks_policy.RetryPolicy``: ±20 % by default). Two
back-offs keep their own lines on purpose: the SMPP reconnect (``adapters/smpp/client.py``)
draws from ``[0.5, 1)`` of the wait and adapters may not import this module (STYLE.md §1); the
callbacks' circuit breaker doubles a stored cooldown per failed probe, a state, not an attempt.
"""

from __future__ import annotations

_MAX_EXPONENT = 64  # factor ** 64 (factor >= 2) dwarfs any cap; keeps the power finite


def delay(attempt: int, *, base: float, cap: float, factor: float = 2.0, jitter: float = 0.0,
          rand: float = 0.0) -> float:
    """Seconds to wait before retry ``attempt`` (1-based).

    Args:
        attempt: 1 for the first retry; each one waits ``factor`` times longer, up to ``cap``.
        base: the first wait (before jitter).
        cap: no wait is longer, jitter included.
        factor: growth per attempt (>= 1).
        jitter: relative spread in [0, 1): 0.2 draws the wait from ±20 % of its nominal value.
        rand: a uniform number in [0, 1) choosing where in that spread this wait falls.
    """
    nominal = min(cap, base * factor ** min(attempt - 1, _MAX_EXPONENT))
    if not jitter:
        return float(nominal)
    return min(cap, nominal * (1 - jitter + 2 * jitter * rand))

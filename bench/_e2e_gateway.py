"""Launch ``septet serve`` for the end-to-end benchmark, optionally with batched callbacks.

    python -m bench._e2e_gateway [--callback-batch N] --config septet.toml serve

The configuration file has no option for the notifier's ``RetryPolicy.batch_size`` (events per
callback request) yet, so with ``--callback-batch N`` (N > 1) this launcher makes the policy
that ``gateway.cli`` builds default to ``batch_size=N`` before running it unchanged. Without
the option it is exactly ``python -m gateway.cli``.
"""

from __future__ import annotations

import sys
from functools import partial


def main(argv: list[str]) -> int:
    if argv[:1] == ["--callback-batch"]:
        batch, argv = int(argv[1]), argv[2:]
        if batch > 1:
            from actors import callbacks_policy

            callbacks_policy.RetryPolicy = partial(  # type: ignore[misc,assignment]
                callbacks_policy.RetryPolicy, batch_size=batch)
    from gateway.cli import main as septet

    return septet(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))

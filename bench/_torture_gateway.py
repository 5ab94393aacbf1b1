"""Launch ``septet serve`` for the crash loop with a chosen in-doubt policy.

    python -m bench._torture_gateway resend|mark_unknown --config septet.toml serve

The configuration file has no key for ``CoreSettings.in_doubt`` (what recovery does with
parts that were in flight when the process died) yet, so this launcher makes the settings
that ``gateway.cli`` builds default to the chosen policy, then runs it unchanged.
"""

from __future__ import annotations

import sys
from functools import partial


def main(argv: list[str]) -> int:
    policy, argv = argv[0], argv[1:]
    if policy not in ("resend", "mark_unknown"):
        raise SystemExit(f"unknown in-doubt policy {policy!r}")
    from gateway import app

    app.CoreSettings = partial(app.CoreSettings, in_doubt=policy)  # type: ignore[misc]
    from gateway.cli import main as septet

    return septet(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))

"""Launch ``septet serve`` for the end-to-end benchmark, optionally with batched callbacks.

    python -m bench._e2e_gateway [--callback-batch N] --config septet.toml serve

``--callback-batch N`` sets the ``[callbacks] batch_size`` option (events per callback request)
through its environment variable ``SEPTET_CALLBACKS__BATCH_SIZE``, which wins over the file;
the gateway is otherwise exactly ``python -m gateway.cli``.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["--callback-batch"]:
        os.environ["SEPTET_CALLBACKS__BATCH_SIZE"] = str(int(argv[1]))
        argv = argv[2:]
    from gateway.cli import main as septet

    return septet(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))

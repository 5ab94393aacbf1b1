"""``python -m adapters.simulator``: run the simulated SMSC (see ``main``)."""

from __future__ import annotations

import sys

from adapters.simulator.main import main

sys.exit(main(sys.argv[1:]))

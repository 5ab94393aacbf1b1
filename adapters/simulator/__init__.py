"""A simulated SMSC: a real SMPP 3.4 server for tests, the benchmark and ``septet simulator``.

Public names: ``SimulatorConfig``, ``SimulatorStats``, ``serve_simulator``, ``main``.
"""

from __future__ import annotations

from adapters.simulator.config import SimulatorConfig, SimulatorStats
from adapters.simulator.main import main
from adapters.simulator.server import serve_simulator

__all__ = ["SimulatorConfig", "SimulatorStats", "main", "serve_simulator"]

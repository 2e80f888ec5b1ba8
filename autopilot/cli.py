"""Custom commands of the ``autopilot`` command line (besides Faust's own).

* ``autopilot broker [--port N]`` — run the embedded Kafka-compatible broker (Tansu,
  memory only) in the foreground on 127.0.0.1; Ctrl-C stops it.
* ``autopilot demo`` — replay a real failure end to end (see :mod:`autopilot.demo`).

Faust's commands (``worker``, ``agents``, ``tables``, ``send`` …) work as usual.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.cli import AppCommand, option

from autopilot.app import app


@app.command(
    option("--port", type=int, default=9092, show_default=True, help="TCP port on 127.0.0.1"),
)
async def broker(self: AppCommand, port: int) -> None:
    """Run the embedded Kafka-compatible broker (in memory) until interrupted."""
    from autopilot.broker import EmbeddedBroker

    embedded = EmbeddedBroker(port=port)
    await embedded.start_async()
    self.say(f"Embedded broker (Tansu, in-memory) listening on {embedded.bootstrap}")
    self.say(f"Point workers at it with AUTOPILOT_BROKER={embedded.url}; Ctrl-C stops it.")
    try:
        code = await asyncio.to_thread(embedded.wait)
        self.say(f"broker exited with code {code}")
    finally:
        embedded.stop()


@app.command(
    option("--timeout", type=float, default=600.0, show_default=True,
           help="Give up after this many seconds"),
)
async def demo(self: AppCommand, timeout: float) -> Any:
    """Replay a real EC2 latency failure through the whole pipeline."""
    from autopilot.demo import run_demo

    code = await run_demo(timeout_s=timeout)
    if code:
        raise SystemExit(code)

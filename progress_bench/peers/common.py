"""What every Python peer shares: the calculation's timing and its messages.

A peer only decides how it writes to its clients; the states, their timestamps and
their encoding are the same everywhere, so only the fan-out differs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

STATES = ("STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS")


class Calculation:
    """The shared state: runs one calculation at a time, broadcasting each change."""

    def __init__(self, step_seconds: float, broadcast: Callable[[str], Awaitable[None] | None]):
        self.step = step_seconds
        self.broadcast = broadcast
        self.seq = 0
        self.state = "IDLE"
        self.calculation_id: str | None = None
        self.changed_at = time.time()
        self.running = False

    def message(self) -> str:
        return json.dumps(
            {
                "type": "state",
                "state": self.state,
                "calculation_id": self.calculation_id,
                "seq": self.seq,
                "changed_at": self.changed_at,
                "step_seconds": self.step,
            }
        )

    def start(self) -> bool:
        if self.running:
            return False
        self.running = True
        self.calculation_id = uuid.uuid4().hex[:12]
        asyncio.get_running_loop().create_task(self._run())
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started_mono, started_wall = loop.time(), time.time()
        for index, state in enumerate(STATES):
            delay = started_mono + index * self.step - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.seq += 1
            self.state = state
            self.changed_at = started_wall + index * self.step
            result = self.broadcast(self.message())
            if result is not None:
                await result
        self.running = False


def hello() -> str:
    return json.dumps({"type": "hello", "protocol": 1, "server": "peer", "client_id": "x"})


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    return parser.parse_args()

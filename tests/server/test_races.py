"""Actions aimed at the deadlines, end to end: no client ever misses a transition."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from progress_server.server import ProgressServer
from tests.helpers import TIME_FACTOR, TIMEOUT, http_request, join, recv_json, recv_type, send_json

#: Short steps, so that a hundred runs take seconds; the aim is a few ms around each
#: deadline. Scaled with the machine, and doubled at run time when the driver read its
#: states too late to aim (on a busy machine, late enough to miss every deadline).
RACE_STEP = 0.02 * TIME_FACTOR
#: Rounds at most, each with steps twice as long as the one before.
ROUNDS = 3
CLIENTS = 50
#: Runs on each of SERVERS servers, side by side (each run lasts a few steps).
RUNS = 50
SERVERS = 2
FINAL = ("SUCCESS", "CANCELED")


@dataclass
class Watcher:
    """A real client that reads every message and keeps the states it saw."""

    ws: ClientConnection
    states: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for data in self.ws:
            message = json.loads(data)
            if message["type"] == "state":
                self.states.append(message)


async def at_wall_time(when: float) -> None:
    """Sleep until the wall-clock time `when` (the deadlines are announced in wall time)."""
    await asyncio.sleep(max(0.0, when - time.time()))


async def race(seed: int, step: float) -> Counter[str]:
    """50 clients of a new server; RUNS runs, each hit by a cancel or a start a few ms
    before or after a deadline; checks that no client missed anything. Returns how
    often each aim had each outcome."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    # The driver acts faster than the default rate limit allows.
    async with ProgressServer(port=0, step_seconds=step, rate_limit=1000) as server:
        watchers = []
        for _ in range(CLIENTS):
            ws, _, _ = await join(server.url)
            watcher = Watcher(ws)
            watcher.reader = asyncio.create_task(watcher.read())
            watchers.append(watcher)
        driver, _, _ = await join(server.url)
        aims = [("cancel", 3), ("start", 2), ("start", 1), ("cancel", 2), ("cancel", 1)]
        try:
            for run in range(RUNS):
                await send_json(driver, {"action": "start"})
                started = await recv_type(driver, "state")
                assert started["state"] == "STARTING", f"run {run}: {started}"
                action, deadline = aims[0] if run % 2 == 0 else rng.choice(aims)
                aim = started["changed_at"] + deadline * step + rng.uniform(-0.003, 0.003)
                await at_wall_time(aim)
                request_id = f"run {run}"
                await send_json(driver, {"action": action, "request_id": request_id})
                # Until the action is answered and the run ends; a start that came too
                # late for the run aimed at (a stall) starts one more, awaited too.
                reply: dict[str, Any] | None = None
                ended: dict[str, Any] | None = None  # how the run aimed at ended
                message, awaited = started, started["calculation_id"]
                try:
                    async with asyncio.timeout(3 * step + TIMEOUT):
                        while reply is None or not (
                            message["state"] in FINAL and message["calculation_id"] == awaited
                        ):
                            received = await recv_json(driver)
                            if received["type"] == "state":
                                message = received
                                if ended is None and message["state"] in FINAL:
                                    ended = message
                            elif received.get("request_id") == request_id:
                                reply = received
                                if reply["type"] == "ack" and action == "start":
                                    awaited = reply["calculation_id"]
                except TimeoutError:
                    pytest.fail(
                        f"run {run}: after a {action} aimed at deadline {deadline}, the "
                        f"clients stayed on {message['state']} (seq {message['seq']})"
                    )
                assert ended is not None and ended["calculation_id"] == started["calculation_id"]
                during = (
                    f" during {ended['canceled_during']}" if ended.get("canceled_during") else ""
                )
                outcomes[f"{action}@{deadline} -> {ended['state']}{during}"] += 1

            _, _, final = await http_request(server.port, "GET", "/state")
            assert final["state"] in ("SUCCESS", "CANCELED")
            async with asyncio.timeout(TIMEOUT):
                while any(w.states[-1]["seq"] != final["seq"] for w in watchers):
                    await asyncio.sleep(0.01)
            fresh, _, joined = await join(server.url)
            await fresh.close()
            assert joined == final
            for number, watcher in enumerate(watchers):
                seqs = [state["seq"] for state in watcher.states]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (
                    f"client {number} saw a gap or a repeat in seq"
                )
                assert watcher.states[-1] == final
        finally:
            await driver.close()
            for watcher in watchers:
                await watcher.ws.close()
                assert watcher.reader is not None
                watcher.reader.cancel()
    return outcomes


async def test_actions_aimed_at_deadlines_lose_no_transition() -> None:
    """Two servers side by side, each with 50 clients and 50 runs, each run hit by a
    cancel or a start a few ms before or after a deadline. Every run ends (no client is
    left on a running state), every client sees strictly increasing seq with no gap, and
    at the end every client, GET /state and a fresh joiner agree. Until the race was
    real (a cancel landed on each side of a deadline), again with longer steps."""
    # Before a deadline, a cancel is during the state the deadline ends; after, the next.
    sides = {
        1: ("CANCELED during STARTING", "CANCELED during IN_PROGRESS"),
        2: ("CANCELED during IN_PROGRESS", "CANCELED during ALMOST_DONE"),
        3: ("CANCELED during ALMOST_DONE", "SUCCESS"),
    }
    step = RACE_STEP
    for _ in range(ROUNDS):
        races = (race(seed, step) for seed in range(8, 8 + SERVERS))
        outcomes = sum(await asyncio.gather(*races), Counter())
        if any(
            outcomes[f"cancel@{k} -> {before}"] and outcomes[f"cancel@{k} -> {after}"]
            for k, (before, after) in sides.items()
        ):
            return
        step *= 2
    pytest.fail(
        f"no cancel landed on both sides of a deadline, even with {step / 2:g} s steps: {outcomes}"
    )

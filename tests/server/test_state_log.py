"""The log's line for each state change: once in a cluster, from whoever committed it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from progress_protocol.states import StateSnapshot
from progress_server.backends.base import CommitListener
from progress_server.backends.memory import MemoryBackend
from progress_server.server import ProgressServer
from tests.helpers import STEP, TIMEOUT, Watcher


class LateCommits(MemoryBackend):
    """Tells of its commits only after it delivered them: as an instance on Redis may
    hear its own transition on the channel before its transaction's answer."""

    def __init__(self, **kwargs: Any) -> None:
        self._told: CommitListener | None = None
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def on_commit(self) -> CommitListener | None:
        return None if self._told is None else self._later

    @on_commit.setter
    def on_commit(self, listener: CommitListener | None) -> None:
        self._told = listener

    def _later(self, snapshots: tuple[StateSnapshot, ...]) -> None:
        assert self._told is not None
        loop = asyncio.get_running_loop()
        # After the delivery the backend schedules next (call_soon, in order).
        loop.call_soon(loop.call_soon, self._told, snapshots)


def state_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage().split()[1]
        for record in caplog.records
        if record.name == "progress_server.hub"
        and record.levelno == level
        and record.getMessage().startswith("state ")
    ]


async def test_a_change_heard_before_its_commit_is_still_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A change published before this process knew it had committed it is logged at
    DEBUG (another's, as far as it knew), then at INFO once the commit is told: every
    state of the run has its INFO line, and a process never loses it to the race."""
    caplog.set_level(logging.DEBUG, logger="progress_server.hub")
    backend = LateCommits(step_seconds=STEP)
    async with ProgressServer(port=0, backend=backend) as server:
        watcher = await Watcher.join(server.url)
        await server.service.perform("start")
        await watcher.until("state", state="SUCCESS")
        async with asyncio.timeout(TIMEOUT):
            while len(state_lines(caplog, logging.INFO)) < 4:
                await asyncio.sleep(0.01)
        await watcher.close()
    expected = ["STARTING", "IN_PROGRESS", "ALMOST_DONE", "SUCCESS"]
    assert state_lines(caplog, logging.INFO) == expected
    assert state_lines(caplog, logging.DEBUG) == expected


async def test_a_single_server_logs_every_change_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In memory, every change is this process's own: each state is one INFO line that
    says how many clients it went to here."""
    caplog.set_level(logging.DEBUG, logger="progress_server.hub")
    async with ProgressServer(port=0, step_seconds=STEP) as server:
        watcher = await Watcher.join(server.url)
        await server.service.perform("start")
        await watcher.until("state", state="SUCCESS")
        await watcher.close()
    assert state_lines(caplog, logging.INFO) == [
        "STARTING",
        "IN_PROGRESS",
        "ALMOST_DONE",
        "SUCCESS",
    ]
    assert state_lines(caplog, logging.DEBUG) == []
    assert "sent to 1 client here" in caplog.text

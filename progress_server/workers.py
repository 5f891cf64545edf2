"""``--workers N``: N server processes on one port, kept running by a supervisor.

Python serves from one core; a second process uses a second. Each worker is a whole
``progress-server`` process: it binds the same port with ``SO_REUSEPORT`` (the kernel
spreads the new connections over them) and shares the calculation with the others
through Redis, so a client sees the same picture whichever worker it reached.

The supervisor (the process started by the user) starts the workers, restarts one that
dies (logged, with a growing delay if it keeps dying), and on SIGTERM, SIGINT or SIGHUP
passes the signal on, so that every worker closes its clients with 1001, then exits 0.
A worker that fails at once (the port is taken, Redis cannot be reached) stops
everything: its own sentence says why, and the supervisor exits with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import multiprocess as prometheus_multiprocess

from .metrics import MULTIPROCESS_VARIABLE

__all__ = ["WORKER_VARIABLE", "Supervisor", "reserve_port"]

logger = logging.getLogger(__name__)

#: Set in a worker's environment to its number (1..N): its log lines say which it is.
WORKER_VARIABLE = "PROGRESS_WORKER"
#: A worker that exits this soon after it started, with the status of a setup error,
#: failed to start: nothing to restart.
STARTUP_SECONDS = 5.0
#: How long the workers may take to close their clients before they are killed.
STOP_SECONDS = 10.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, not listening: it holds the
    port number (chosen here when ``port`` is 0) until the workers listen on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Worker:
    number: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    waiter: asyncio.Task[int] | None = field(default=None, repr=False)


class Supervisor:
    """Runs ``count`` workers, each ``python -m progress_server`` with ``arguments``.

    Args:
        count: How many workers.
        arguments: The worker's command-line arguments (the port, ``--reuse-port``).
    """

    def __init__(self, count: int, arguments: Sequence[str]) -> None:
        self.count = count
        self.arguments = list(arguments)
        # Every worker counts into prometheus-client's files here, so that whichever
        # worker answers GET /metrics reports all of them.
        self.metrics_directory = tempfile.mkdtemp(prefix="progress-metrics-")
        self.workers = [Worker(number) for number in range(1, count + 1)]
        self._stopping = asyncio.Event()
        self._signal = signal.SIGTERM  # passed on to the workers, whichever came
        self._failed: str | None = None

    async def run(self) -> int:
        """Until a signal: start the workers, restart the dead; returns the exit status."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._stop, signum)
        try:
            for worker in self.workers:
                await self._start(worker)
            return await self._supervise()
        finally:
            shutil.rmtree(self.metrics_directory, ignore_errors=True)

    async def _supervise(self) -> int:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            waiters: dict[asyncio.Task[Any], Worker] = {
                worker.waiter: worker for worker in self.workers if worker.waiter is not None
            }
            stopping: asyncio.Task[Any] = loop.create_task(self._stopping.wait())
            done, _ = await asyncio.wait([*waiters, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task in done:
                dead = waiters.get(task)
                if dead is not None and not self._stopping.is_set():
                    await self._died(dead, int(task.result()))
        await self._stop_all()
        return 1 if self._failed else 0

    def _stop(self, signum: int) -> None:
        if not self._stopping.is_set():
            logger.info("%s: stopping the %d workers", signal.Signals(signum).name, self.count)
            self._signal = signal.Signals(signum)
            self._stopping.set()

    async def _start(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        environment = {
            **os.environ,
            WORKER_VARIABLE: str(worker.number),
            MULTIPROCESS_VARIABLE: self.metrics_directory,
        }
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "progress_server",
            *self.arguments,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
        )
        worker.started_at = loop.time()
        worker.waiter = loop.create_task(worker.process.wait())
        logger.info("worker %d started (pid %d)", worker.number, worker.process.pid)

    async def _died(self, worker: Worker, status: int) -> None:
        loop = asyncio.get_running_loop()
        assert worker.process is not None
        pid = worker.process.pid
        worker.waiter = None
        # Its live gauges (clients, lagging) go; its counters stay in the totals.
        prometheus_multiprocess.mark_process_dead(pid, self.metrics_directory)  # type: ignore[no-untyped-call]
        early = loop.time() - worker.started_at < STARTUP_SECONDS
        if early and worker.restarts == 0 and status in (1, 2):
            # It could not start (its own sentence says why: the port is taken, Redis
            # cannot be reached, an option is wrong): restarting cannot help.
            self._failed = f"worker {worker.number} could not start (status {status})"
            logger.error("%s: stopping", self._failed)
            self._stopping.set()
            return
        worker.restarts += 1
        delay = min(30.0, 0.5 * 2 ** min(worker.restarts - 1, 6))
        logger.error(
            "worker %d (pid %d) died with status %d: restarting it in %.1f s",
            worker.number,
            pid,
            status,
            delay,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if not self._stopping.is_set():
            await self._start(worker)

    async def _stop_all(self) -> None:
        running = [w for w in self.workers if w.process and w.process.returncode is None]
        for worker in running:
            assert worker.process is not None
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(self._signal)
        waits = [worker.process.wait() for worker in running if worker.process]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), STOP_SECONDS)
        except TimeoutError:
            for worker in running:
                assert worker.process is not None
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
            logger.error("workers that did not stop within %.0f s were killed", STOP_SECONDS)
        logger.info("all workers stopped")

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

A worker that hangs keeps its share of the new connections, which the kernel goes on
handing it: each worker's event loop writes a byte to a pipe every tenth of
``--worker-timeout``, and the supervisor kills and replaces a worker silent for longer.
A worker must not outlive its supervisor either (it would serve an old version beside
the next supervisor's workers): the kernel sends it SIGTERM when the supervisor dies
(Linux's ``PR_SET_PDEATHSIG``, as :data:`SUPERVISOR_GONE`, which the worker turns into
its SIGTERM), and a heartbeat that finds the pipe's other end closed
does the same where that is missing. Either way the worker stops as on any SIGTERM.
A worker that cannot stop by itself (its loop hangs) is ended by a thread of its own
:data:`STOP_SECONDS` after its supervisor died; and one that cannot run at all (stopped
with SIGSTOP, frozen) is killed by the next supervisor on its port, before that one
starts its own workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client import multiprocess as prometheus_multiprocess

from .metrics import MULTIPROCESS_VARIABLE

__all__ = [
    "WORKER_TIMEOUT",
    "WORKER_VARIABLE",
    "Heartbeat",
    "Supervisor",
    "join_supervisor",
    "reserve_port",
]

logger = logging.getLogger(__name__)

#: Set in a worker's environment to its number (1..N): its log lines say which it is.
WORKER_VARIABLE = "PROGRESS_WORKER"
#: A worker that exits this soon after it started, with the status of a setup error,
#: failed to start: nothing to restart.
STARTUP_SECONDS = 5.0
#: How long the workers may take to close their clients before they are killed.
STOP_SECONDS = 10.0
#: A worker silent this long is hung and replaced. Under the heaviest load measured
#: (7 workers on 2 cores, 100,000 clients) a state reached every client within 1.6 s,
#: and replacing a busy worker by mistake drops its clients onto the others: margin.
WORKER_TIMEOUT = 5.0
#: A new worker's first heartbeat may take this long: Python starts and imports first.
FIRST_BEAT_SECONDS = 30.0
#: Set in a worker's environment: its supervisor's pid, the pipe it writes its
#: heartbeat to, and how often.
SUPERVISOR_VARIABLE = "PROGRESS_SUPERVISOR_PID"
HEARTBEAT_FD_VARIABLE = "PROGRESS_HEARTBEAT_FD"
HEARTBEAT_SECONDS_VARIABLE = "PROGRESS_HEARTBEAT_SECONDS"
#: The supervisor's pid is in its metrics directory's name, so that the next one can
#: tell a directory left by one that was killed (the random part of mkdtemp's names
#: holds no "-": older directories never match).
METRICS_PREFIX = "progress-metrics-"
METRICS_NAME = re.compile(rf"{METRICS_PREFIX}(\d+)-")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: What the kernel sends a worker when its supervisor dies. Not SIGTERM itself: that
#: is also how a living supervisor stops its workers, and when the signal comes the
#: worker's parent may still look alive (another of the dying supervisor's threads
#: adopts it first); a signal of its own says which it was.
SUPERVISOR_GONE = signal.SIGUSR1


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


class Heartbeat:
    """A worker's side of the pipe its supervisor watches.

    Args:
        supervisor: The supervisor's pid.
        fd: The pipe's write end.
        interval: Seconds between two beats.
    """

    def __init__(self, supervisor: int, fd: int, interval: float) -> None:
        self.supervisor = supervisor
        self.fd = fd
        self.interval = interval
        # A supervisor that does not read (stopped) must not block this loop.
        os.set_blocking(fd, False)
        self._gone_said = False

    async def beside(self, main: Coroutine[Any, Any, None]) -> None:
        """Run ``main`` (the server, until it stopped) while beating."""
        threading.Thread(target=self._outlive_no_supervisor, daemon=True).start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(SUPERVISOR_GONE, self._gone, "the kernel said so")
        beating = loop.create_task(self._beat())
        try:
            await main
        finally:
            beating.cancel()

    def _gone(self, how: str) -> None:
        """The supervisor died: say so once, and stop as on any SIGTERM (the clients
        get 1001)."""
        if self._gone_said:
            return
        self._gone_said = True
        logger.warning("the supervisor (pid %d) is gone (%s): stopping", self.supervisor, how)
        os.kill(os.getpid(), signal.SIGTERM)

    def _outlive_no_supervisor(self) -> None:
        """A thread: once the supervisor is gone, the worker has STOP_SECONDS to stop as
        on SIGTERM; one whose loop hangs (and so cannot) is ended then. A thread runs
        even while the loop is stuck in Python."""
        while os.getppid() == self.supervisor:
            time.sleep(self.interval)
        time.sleep(STOP_SECONDS)
        logger.error(
            "the supervisor (pid %d) is gone and this worker did not stop within %.0f s: ending it",
            self.supervisor,
            STOP_SECONDS,
        )
        os._exit(1)

    async def _beat(self) -> None:
        # From the event loop, not a thread: a loop that hangs must fall silent.
        while True:
            try:
                os.write(self.fd, b".")
            except BlockingIOError:
                pass  # the pipe is full: the supervisor lives but does not read (stopped)
            except OSError as exc:  # EPIPE: the supervisor, who held the other end, died
                self._gone(str(exc.strerror or exc))
                return
            await asyncio.sleep(self.interval)


def join_supervisor() -> Heartbeat | None:
    """In a worker of ``--workers``: ask for SIGTERM when the supervisor dies, and return
    the heartbeat it watches; None in any other process.

    Raises:
        SystemExit: If the supervisor died before the worker could ask (status 0: there
            is nobody to tell, and nothing was served).
    """
    try:
        supervisor = int(os.environ[SUPERVISOR_VARIABLE])
        fd = int(os.environ[HEARTBEAT_FD_VARIABLE])
        interval = float(os.environ[HEARTBEAT_SECONDS_VARIABLE])
    except (KeyError, ValueError):
        return None
    _die_with_parent()
    # Asked after the fork: the supervisor may have died in between, and then this
    # worker already belongs to init (or a subreaper), and no signal will come.
    if os.getppid() != supervisor:
        logger.warning("the supervisor (pid %d) is gone: not starting", supervisor)
        sys.exit(0)
    return Heartbeat(supervisor, fd, interval)


def _die_with_parent() -> None:
    """SUPERVISOR_GONE when the parent dies, where Linux's prctl is there to ask."""
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return  # the heartbeat alone notices the supervisor's death, within a beat
    # Until the loop can handle it, the signal is ignored (by default it would end the
    # process at once): the heartbeat then finds the supervisor gone.
    signal.signal(SUPERVISOR_GONE, signal.SIG_IGN)
    if prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(SUPERVISOR_GONE), 0, 0, 0) != 0:
        logger.debug("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))


@dataclass
class Worker:
    number: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    waiter: asyncio.Task[int] | None = field(default=None, repr=False)
    #: The read end of its heartbeat pipe, and when it was last heard (or started).
    heartbeat: int | None = None
    heard_at: float = 0.0
    heard: bool = False
    #: Killed for its silence: already logged, restarted at once.
    hung: bool = False


class Supervisor:
    """Runs ``count`` workers, each ``python -m progress_server`` with ``arguments``.

    Args:
        count: How many workers.
        arguments: The worker's command-line arguments (the port, ``--reuse-port``).
        timeout: Seconds without a heartbeat after which a worker is hung and replaced.
    """

    def __init__(
        self, count: int, arguments: Sequence[str], *, timeout: float = WORKER_TIMEOUT
    ) -> None:
        self.count = count
        self.arguments = list(arguments)
        self.timeout = timeout
        self.interval = timeout / 10
        remove_stale_metrics_directories()
        kill_orphaned_workers(_port_of(self.arguments))
        # Every worker counts into prometheus-client's files here, so that whichever
        # worker answers GET /metrics reports all of them.
        self.metrics_directory = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
        self.workers = [Worker(number) for number in range(1, count + 1)]
        self._stopping = asyncio.Event()
        self._signal = signal.SIGTERM  # passed on to the workers, whichever came
        self._failed: str | None = None

    async def run(self) -> int:
        """Until a signal: start the workers, restart the dead; returns the exit status."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._stop, signum)
        watching: asyncio.Task[None] | None = None
        try:
            for worker in self.workers:
                await self._start(worker)
            watching = loop.create_task(self._watch())
            return await self._supervise()
        finally:
            if watching is not None:
                watching.cancel()
            for worker in self.workers:
                self._close_heartbeat(worker)
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
        # Only the worker holds the write end (the supervisor closes its copy, and the
        # other workers never get it), so its end of the pipe tells its death as EOF,
        # and ours, closed by the kernel when we die, tells the worker EPIPE.
        reading, writing = os.pipe()
        os.set_blocking(reading, False)
        environment = {
            **os.environ,
            WORKER_VARIABLE: str(worker.number),
            MULTIPROCESS_VARIABLE: self.metrics_directory,
            SUPERVISOR_VARIABLE: str(os.getpid()),
            HEARTBEAT_FD_VARIABLE: str(writing),
            HEARTBEAT_SECONDS_VARIABLE: repr(self.interval),
        }
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "progress_server",
                *self.arguments,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(writing,),
            )
        except BaseException:
            os.close(reading)
            raise
        finally:
            os.close(writing)
        worker.heartbeat = reading
        worker.started_at = worker.heard_at = loop.time()
        worker.heard = worker.hung = False
        worker.waiter = loop.create_task(worker.process.wait())
        logger.info("worker %d started (pid %d)", worker.number, worker.process.pid)

    async def _watch(self) -> None:
        """Every beat interval: who was heard since; kill a worker silent for too long."""
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            await asyncio.sleep(self.interval)
            if self._stopping.is_set():
                return  # a worker closing its clients is given STOP_SECONDS instead
            # What the pipes hold counts, however late this wakes (a busy machine, or
            # the supervisor itself stopped): silence is judged on the workers alone.
            now = loop.time()
            for worker in self.workers:
                process = worker.process
                if process is None or process.returncode is not None or worker.hung:
                    continue
                heard = _drain(worker.heartbeat)
                if heard is None:
                    continue  # it died: its waiter says so
                if heard:
                    worker.heard_at, worker.heard = now, True
                    continue
                limit = self.timeout if worker.heard else max(self.timeout, FIRST_BEAT_SECONDS)
                silence = now - worker.heard_at
                if silence > limit:
                    worker.hung = True
                    logger.error(
                        "worker %d (pid %d) sent no heartbeat for %.1f s (hung, or stopped): "
                        "killing it and starting another",
                        worker.number,
                        process.pid,
                        silence,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()

    @staticmethod
    def _close_heartbeat(worker: Worker) -> None:
        if worker.heartbeat is not None:
            os.close(worker.heartbeat)
            worker.heartbeat = None

    async def _died(self, worker: Worker, status: int) -> None:
        loop = asyncio.get_running_loop()
        assert worker.process is not None
        pid = worker.process.pid
        worker.waiter = None
        self._close_heartbeat(worker)
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
        if worker.hung:
            await self._start(worker)  # said when it was killed; a hang is no crash loop
            return
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


def _drain(fd: int | None) -> bool | None:
    """Whether the worker wrote to its heartbeat pipe since the last call; None once it
    closed it (it died)."""
    if fd is None:
        return None
    heard = False
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return heard
        if not data:
            return None
        heard = True


def kill_orphaned_workers(port: int | None) -> None:
    """Kill the workers on ``port`` whose supervisor is gone: they would share it with
    this supervisor's. One that could stop by itself has (SIGTERM came with its
    supervisor's death); what is left cannot run its own stop: stopped (SIGSTOP), or
    hung. Only this user's ``progress_server`` workers are looked at."""
    if port is None:
        return
    me = os.getuid()
    for process in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            info = process.info
            command = info.get("cmdline") or []
            uids = info.get("uids")
            if (
                uids is None
                or uids.real != me
                or "progress_server" not in command
                or "--reuse-port" not in command
                or _port_of(command) != port
            ):
                continue
            supervisor = int(process.environ().get(SUPERVISOR_VARIABLE, "0"))
            if supervisor <= 0 or (_running(supervisor) and process.ppid() == supervisor):
                continue  # not a worker of ours, or one whose supervisor lives
            process.kill()  # SIGKILL: the one signal a stopped process obeys
            logger.warning(
                "killed worker pid %d, left on port %d by a supervisor that is gone (pid %d)",
                process.pid,
                port,
                supervisor,
            )
        except (psutil.Error, ValueError, OSError):
            continue


def _port_of(arguments: Sequence[str]) -> int | None:
    """The port a worker's arguments name (the last ``--port`` wins, as for click)."""
    port = None
    for index, argument in enumerate(arguments[:-1]):
        if argument == "--port":
            port = arguments[index + 1]
    try:
        return int(port) if port is not None else None
    except ValueError:
        return None


def remove_stale_metrics_directories() -> None:
    """Remove the metrics directories of supervisors that are no longer running: one that
    was killed (SIGKILL, the OOM killer) could not remove its own."""
    parent = tempfile.gettempdir()
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        match = METRICS_NAME.match(entry.name)
        if match is None or _running(int(match.group(1))):
            continue
        try:
            # Only ours: /tmp is shared, and the name is easy to take.
            if (
                not entry.is_dir(follow_symlinks=False)
                or entry.stat(follow_symlinks=False).st_uid != os.getuid()
            ):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        logger.info("removed %s, left by a supervisor that is no longer running", entry.path)


def _running(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process's: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True

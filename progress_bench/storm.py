"""The reconnect storm: every client loses the server at once and comes back.

N clients follow progress-client's own reconnect policy
(:class:`~progress_client.reconnect.ReconnectPolicy`: full jitter, 0.5 s doubling to
10 s, reset after a connection that lasted 5 s, a ``Retry-After`` honoured) but are
raw asyncio protocols, as in the load generator, so that the load-generating processes
cost little beside the server. The server is killed (SIGKILL, as a crash or an OOM
kill would) and started again on the same port; the bench reports how long until every
client had a state again, what the server refused or dropped on the way, and its peak
CPU and memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from progress_client.failures import MAX_RETRY_AFTER
from progress_client.reconnect import ReconnectPolicy

from .loadgen import HANDSHAKE, ProcessGroup, pongs_for, run_worker, shares, source_of
from .servers import free_ports, progress_server_argv, stop, wait_listening

__all__ = ["STABLE_AFTER", "Peak", "StormClients", "StormReport", "run_storm", "storm_table"]

#: What the server's first state message holds (after hello, in the same write).
STATE_MARKER = b'"type":"state"'
#: As progress-client: a connection must last this long to reset the backoff.
STABLE_AFTER = 5.0
#: As websockets' client (open_timeout): a handshake that takes longer is given up.
OPEN_TIMEOUT = 10.0
_RETRY_AFTER = re.compile(rb"\r\nretry-after:\s*(\d+)", re.IGNORECASE)


@dataclass
class Tally:
    """What one load-generating process saw since it was last armed."""

    synced_after: list[float] = field(default_factory=list)  # seconds after the loss
    refused: int = 0  # connect() failed: nothing listened
    rejected: int = 0  # an HTTP answer other than 101 (503 "server full", say)
    dropped: int = 0  # cut before the first state arrived
    timed_out: int = 0  # no answer to the handshake within OPEN_TIMEOUT
    unsynced: int = 0  # clients without a state at the deadline


class StormClient(asyncio.Protocol):
    """One client: connects, waits for the first state, and on any loss tries again
    after the policy's delay."""

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner
        self.policy = ReconnectPolicy()
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.upgraded = False
        self.partial = b""  # a frame cut short at the end of the last chunk
        self.synced = False
        self.synced_at = 0.0  # loop time
        self.retry_after = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.owner.closing:
            return
        task = self.owner.loop.create_task(self._connect())
        self.owner.tasks.add(task)
        task.add_done_callback(self.owner.tasks.discard)

    async def _connect(self) -> None:
        owner = self.owner
        self.head, self.upgraded, self.retry_after, self.partial = b"", False, 0.0, b""
        try:
            async with owner.gate:
                await owner.loop.create_connection(
                    lambda: self, owner.host, owner.port, local_addr=owner.local_addr
                )
        except OSError:
            owner.tally.refused += 1
            self._again()
            return
        self.timer = owner.loop.call_later(OPEN_TIMEOUT, self._timed_out)

    def _timed_out(self) -> None:
        if not self.synced and self.transport is not None:
            self.owner.tally.timed_out += 1
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.owner.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.synced:
            self._answer(data)
            return  # what follows is not measured
        self.head += data
        if not self.upgraded:
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                found = _RETRY_AFTER.search(self.head[:end])
                if found:
                    self.retry_after = min(float(found.group(1)), MAX_RETRY_AFTER)
                self.owner.tally.rejected += 1
                self.head = b""
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            self.head = self.head[end + 4 :]
            self._answer(self.head)  # a busy client may read a ping with the response
        else:
            self._answer(data)
        if STATE_MARKER in self.head:
            self.synced, self.head = True, b""
            self.synced_at = self.owner.loop.time()
            if self.timer is not None:
                self.timer.cancel()
            self.owner.synced(self)
        else:
            self.head = self.head[-len(STATE_MARKER) :]

    def _answer(self, data: bytes) -> None:
        """Answer the pings in ``data``, as a client must."""
        assert self.transport is not None
        pongs, self.partial = pongs_for(self.partial + data if self.partial else data)
        if pongs:
            self.transport.write(pongs)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
        if self.synced:
            if self.owner.loop.time() - self.synced_at >= STABLE_AFTER:
                self.policy.reset()
            self.synced = False
            self.owner.lost()
        elif self.upgraded or self.head:
            self.owner.tally.dropped += 1
        self._again()

    def _again(self) -> None:
        if self.owner.closing:
            return
        delay = max(self.policy.next_delay(), self.retry_after)
        self.owner.loop.call_later(delay, self.start)


class _Owner:
    """The clients of one load-generating process, and what they saw."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        source: str | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.host, self.port, self.loop = host, port, loop
        self.local_addr = (source, 0) if source else None
        self.request = HANDSHAKE.format(path=path, host=host, port=port, extra="").encode()
        self.gate = asyncio.Semaphore(256)  # handshakes under way at once, at most
        self.tally = Tally()
        self.clients: list[StormClient] = []
        self.in_sync = 0
        self.lost_at: float | None = None  # wall time of the loss, once armed
        self.changed = asyncio.Event()
        #: Connection attempts under way; none is started once closing.
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    def synced(self, client: StormClient) -> None:
        self.in_sync += 1
        if self.lost_at is not None:
            self.tally.synced_after.append(time.time() - self.lost_at)
        self.changed.set()

    def lost(self) -> None:
        self.in_sync -= 1

    async def until_all_synced(self, deadline: float) -> None:
        while self.in_sync < len(self.clients) and self.loop.time() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.1)


async def _work(
    pipe: multiprocessing.connection.Connection,
    host: str,
    port: int,
    path: str,
    count: int,
    source: str | None,
) -> None:
    owner = _Owner(host, port, path, source, asyncio.get_running_loop())
    while True:
        command, argument = await asyncio.to_thread(pipe.recv)
        if command == "connect":  # argument: seconds to wait at most
            owner.clients = [StormClient(owner) for _ in range(count)]
            for client in owner.clients:
                client.start()
            await owner.until_all_synced(owner.loop.time() + argument)
            pipe.send(owner.in_sync)
        elif command == "arm":  # argument: the wall time the server is killed at
            owner.tally, owner.lost_at = Tally(), argument
            pipe.send(None)
        elif command == "wait":  # argument: seconds to wait at most
            await owner.until_all_synced(owner.loop.time() + argument)
            owner.tally.unsynced = len(owner.clients) - owner.in_sync
            pipe.send(owner.tally)
        elif command == "close":
            owner.closing = True
            for client in owner.clients:
                if client.transport is not None:
                    client.transport.abort()
            for task in owner.tasks:
                task.cancel()
            await asyncio.gather(*owner.tasks, return_exceptions=True)
            pipe.send(None)
            return


def _worker_main(pipe: multiprocessing.connection.Connection, *args: Any) -> None:
    run_worker(_work, pipe, *args)


class StormClients:
    """``clients`` storm clients in ``processes`` processes, all on one server port."""

    def __init__(
        self, processes: int, port: int, clients: int, *, sources: Sequence[str] = ()
    ) -> None:
        self.group = ProcessGroup(
            _worker_main,
            [
                (
                    "127.0.0.1",
                    port,
                    "/progress",
                    share,
                    source_of(sources, index),
                )
                for index, share in enumerate(shares(clients, processes))
            ],
        )

    def connect(self, timeout: float) -> int:
        """Connect every client; how many have their state within ``timeout``."""
        return sum(self.group.all("connect", timeout))

    def arm(self, lost_at: float) -> None:
        self.group.all("arm", lost_at)

    def wait(self, timeout: float) -> Tally:
        """Until every client has its state again, or ``timeout``; what happened."""
        total = Tally()
        for tally in self.group.all("wait", timeout):
            total.synced_after += tally.synced_after
            total.refused += tally.refused
            total.rejected += tally.rejected
            total.dropped += tally.dropped
            total.timed_out += tally.timed_out
            total.unsynced += tally.unsynced
        return total

    def close(self) -> None:
        self.group.close()


@dataclass
class Peak:
    """The largest CPU use (in cores) and memory of some processes, sampled every
    ``interval`` seconds in a thread until stopped."""

    interval: float = 0.1
    cpu_cores: float = 0.0
    rss_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, pids: Sequence[int]) -> None:
        self._thread = threading.Thread(target=self._sample, args=(list(pids),), daemon=True)
        self._thread.start()

    def _sample(self, pids: list[int]) -> None:
        processes = [psutil.Process(pid) for pid in pids]
        last = {p.pid: sum(p.cpu_times()[:2]) for p in processes}
        stamp = time.monotonic()
        while not self._stop.wait(self.interval):
            now, used, rss = time.monotonic(), 0.0, 0
            for process in processes:
                try:
                    cpu = sum(process.cpu_times()[:2])
                    rss += process.memory_info().rss
                except psutil.Error:
                    continue
                used += cpu - last.get(process.pid, cpu)
                last[process.pid] = cpu
            self.cpu_cores = max(self.cpu_cores, used / max(now - stamp, 1e-6))
            self.rss_bytes = max(self.rss_bytes, rss)
            stamp = now

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class StormReport:
    """One storm, as progress-bench prints and writes it."""

    server: str
    clients: int
    #: Clients with a state before the kill (all of them, or the storm is meaningless).
    connected: int
    #: Seconds from the kill until the new server listened.
    restart_s: float
    #: Seconds from the kill until every client had a state again (inf: not all did).
    all_synced_s: float
    p50_synced_s: float
    p99_synced_s: float
    refused: int
    rejected: int
    dropped: int
    timed_out: int
    gave_up: int
    peak_cpu_cores: float
    peak_rss_mib: float
    #: The goal: every client resynced within the backoff cap plus 2 s of the kill.
    goal_s: float


def run_storm(
    clients: int,
    *,
    processes: int,
    sources: Sequence[str],
    log: Path,
    step_seconds: float = 2.0,
    settle: float = STABLE_AFTER + 0.5,
) -> StormReport:
    """Connect ``clients`` to a progress-server, kill it, start it again on the same
    port, and measure the storm until every client has its state again.

    ``settle``: seconds the connections last before the kill; as in life, long enough
    for a client that needed several attempts to reset its backoff (``--quick``: 0, for
    clients that all connected at their first attempt it changes nothing).
    """
    (port,) = free_ports(1)
    argv = progress_server_argv(port, step_seconds, clients)
    cap = ReconnectPolicy().cap
    goal = cap + 2.0

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )

    server = start()
    storm: StormClients | None = None
    peak = Peak()
    try:
        wait_listening(port, server)
        storm = StormClients(processes, port, clients, sources=sources)
        connected = storm.connect(timeout=120.0)
        time.sleep(settle)
        lost_at = time.time()
        storm.arm(lost_at)
        server.kill()  # SIGKILL: a crash, an OOM kill, a power cut of the process
        server.wait()
        server = start()
        peak.watch([server.pid])
        wait_listening(port, server, timeout=60.0)
        restart = time.time() - lost_at
        tally = storm.wait(timeout=goal + 30.0)
    finally:
        peak.stop()
        try:
            if storm is not None:
                storm.close()
        finally:
            stop([server])
    ordered = sorted(tally.synced_after)

    def at(fraction: float) -> float:
        if not ordered:
            return float("nan")
        return round(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))], 3)

    return StormReport(
        server="progress-server",
        clients=clients,
        connected=connected,
        restart_s=round(restart, 3),
        all_synced_s=round(ordered[-1], 3) if ordered and not tally.unsynced else float("inf"),
        p50_synced_s=at(0.5),
        p99_synced_s=at(0.99),
        refused=tally.refused,
        rejected=tally.rejected,
        dropped=tally.dropped,
        timed_out=tally.timed_out,
        gave_up=tally.unsynced,
        peak_cpu_cores=round(peak.cpu_cores, 2),
        peak_rss_mib=round(peak.rss_bytes / 2**20, 1),
        goal_s=goal,
    )


def storm_table(reports: Sequence[StormReport]) -> str:
    header = (
        f"{'server':<16}{'clients':>8}{'restart s':>10}{'all s':>8}{'p50 s':>7}{'p99 s':>7}"
        f"{'refused':>9}{'rejected':>9}{'dropped':>8}{'t/o':>5}{'gave up':>8}"
        f"{'peak CPU':>9}{'peak MiB':>9}{'goal':>14}"
    )
    lines = [header, "-" * len(header)]
    for r in reports:
        verdict = "met" if r.all_synced_s <= r.goal_s and not r.gave_up else "missed"
        lines.append(
            f"{r.server:<16}{r.clients:>8}{r.restart_s:>10.2f}{r.all_synced_s:>8.2f}"
            f"{r.p50_synced_s:>7.2f}{r.p99_synced_s:>7.2f}{r.refused:>9}{r.rejected:>9}"
            f"{r.dropped:>8}{r.timed_out:>5}{r.gave_up:>8}{r.peak_cpu_cores:>9.2f}"
            f"{r.peak_rss_mib:>9.1f}{f'{verdict} ({r.goal_s:g} s)':>14}"
        )
    return "\n".join(lines)

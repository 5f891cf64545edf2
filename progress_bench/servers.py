"""The servers under test: how to start each one, and what it costs to run it.

A server under test may be several processes: progress-server-redis is two
progress-server instances sharing one calculation through a private redis-server.
:class:`Running` says where its clients connect and which processes count.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = [
    "EXTRA_SERVERS",
    "SERVERS",
    "OneProcess",
    "ReusePortWorkers",
    "Running",
    "ServerUnderTest",
    "SharedThroughRedis",
    "progress_server_argv",
]

NODE_PEER = Path(__file__).parent / "peers" / "node_ws"
REDIS_PREFIX = "progress-bench:"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "progress-bench"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: every socket stays bound until all are picked."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start listening")


def wait_for_redis(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until redis-server answers PING: listening is not enough, it may still be loading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("redis-server did not answer PING")


def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each in turn, waiting for it before the next (SIGKILL after 10 s)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Running:
    """A server under test, started."""

    #: Where its clients connect, shared round robin; the controller uses the first.
    ports: list[int]
    #: Every process it needs, in the order they stop; their CPU and memory are summed.
    processes: list[subprocess.Popen[bytes]]
    cleanup: Callable[[], None] = field(default=lambda: None)

    def stop(self) -> None:
        try:
            stop(self.processes)
        finally:
            self.cleanup()


class ServerUnderTest(Protocol):
    """A server the bench can measure."""

    @property
    def name(self) -> str: ...

    def prepare(self) -> str | None:
        """Get it ready to start; returns a reason to skip it, or None."""

    def start(self, step_seconds: float, clients: int, log: Path) -> Running:
        """Start it and return once it accepts connections; its output goes to ``log``."""


Argv = Callable[[int, float, int], list[str]]


def _ready() -> str | None:
    return None


@dataclass(frozen=True)
class OneProcess:
    """A server that is one process: ``argv(port, step_seconds, clients)``."""

    name: str
    argv: Argv
    needs: Callable[[], str | None] = _ready  # a reason to skip it, or None

    def prepare(self) -> str | None:
        return self.needs()

    def start(self, step_seconds: float, clients: int, log: Path) -> Running:
        (port,) = free_ports(1)
        with log.open("ab") as output:
            process = subprocess.Popen(
                self.argv(port, step_seconds, clients),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_listening(port, process)
        except BaseException:
            stop([process])
            raise
        return Running([port], [process])


@dataclass(frozen=True)
class SharedThroughRedis:
    """``instances`` progress-server processes on as many ports, sharing one
    calculation through a private redis-server (loopback, no persistence, in a
    temporary folder): the clients are split between the instances, and the CPU and
    memory of redis-server count with theirs."""

    name: str
    instances: int = 2

    def prepare(self) -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server is not installed (apt-get install redis-server)"
        if importlib.util.find_spec("redis") is None:
            return "the Python package redis is not installed (pip install 'progress[redis]')"
        return None

    def start(self, step_seconds: float, clients: int, log: Path) -> Running:
        ports = free_ports(self.instances)

        def argv(url: str) -> list[list[str]]:
            return [
                [
                    *progress_server_argv(port, step_seconds, clients),
                    *("--redis-url", url, "--redis-prefix", REDIS_PREFIX),
                ]
                for port in ports
            ]

        return _with_redis(argv, ports, log)


@dataclass(frozen=True)
class ReusePortWorkers:
    """``progress-server --workers N --redis-url ...`` on one port, with its private
    redis-server: the kernel spreads the clients over the N workers (SO_REUSEPORT).

    N is ``workers``, or else as many as hold ``clients`` with each worker under
    ``per_worker`` clients: one process holds at most its limit on open files.
    """

    name: str
    workers: int | None = None
    per_worker: int = 15_000

    def prepare(self) -> str | None:
        return SharedThroughRedis(self.name).prepare()

    def count(self, clients: int) -> int:
        return self.workers or max(2, -(-clients // self.per_worker))

    def start(self, step_seconds: float, clients: int, log: Path) -> Running:
        (port,) = free_ports(1)
        workers = self.count(clients)
        # Each worker takes its share; the kernel's spread is even within a few %.
        share = -(-clients // workers) * 5 // 4 + 100

        def argv(url: str) -> list[list[str]]:
            command = progress_server_argv(port, step_seconds, share)
            command += ["--workers", str(workers), "--redis-url", url]
            return [[*command, "--redis-prefix", REDIS_PREFIX]]

        return _with_redis(argv, [port], log)


def _with_redis(commands: Callable[[str], list[list[str]]], ports: list[int], log: Path) -> Running:
    """A private redis-server (loopback, no persistence, in a temporary folder), then
    ``commands(url)``, each a process, started together; returns once every one of
    ``ports`` listens. redis-server stops last."""
    directory = Path(tempfile.mkdtemp(prefix="progress-bench-redis-"))
    (redis_port,) = free_ports(1)
    url = f"redis://127.0.0.1:{redis_port}/0"
    redis: subprocess.Popen[bytes] | None = None
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with log.open("ab") as output:
            redis = subprocess.Popen(
                [
                    shutil.which("redis-server") or "redis-server",
                    *("--port", str(redis_port), "--bind", "127.0.0.1"),
                    *("--dir", str(directory), "--save", "", "--appendonly", "no"),
                    *("--loglevel", "warning"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            wait_for_redis(redis_port, redis)
            for argv in commands(url):
                processes.append(
                    subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
                    )
                )
        for index, port in enumerate(ports):
            wait_listening(port, processes[min(index, len(processes) - 1)])
    except BaseException:
        stop([*processes, *([redis] if redis else [])])
        shutil.rmtree(directory, ignore_errors=True)
        raise
    # redis-server stops last: the instances must not see it go and say so.
    return Running(
        ports,
        [*processes, redis],
        cleanup=lambda: shutil.rmtree(directory, ignore_errors=True),
    )


def _python_module(module: str, *extra: str) -> Argv:
    def argv(port: int, step: float, clients: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            module,
            "--port",
            str(port),
            "--step-seconds",
            str(step),
            *extra,
        ]

    return argv


def _progress_server_without_metrics(port: int, step: float, clients: int) -> list[str]:
    return [*progress_server_argv(port, step, clients), "--no-metrics"]


def progress_server_argv(port: int, step: float, clients: int) -> list[str]:
    """progress-server as the bench measures it: room for ``clients``, warnings only."""
    return [*_progress_server_info(port, step, clients), "--log-level", "warning"]


def _progress_server_info(port: int, step: float, clients: int) -> list[str]:
    """At its default log level (info: a line for each client that comes or goes)."""
    return [
        sys.executable,
        "-m",
        "progress_server",
        "--port",
        str(port),
        "--step-seconds",
        str(step),
        "--max-clients",
        str(clients + 100),
    ]


def _needs_module(name: str) -> Callable[[], str | None]:
    def prepare() -> str | None:
        return (
            None
            if importlib.util.find_spec(name)
            else f"the Python package {name} is not installed"
        )

    return prepare


def _prepare_node() -> str | None:
    """Install the npm package ws into the cache folder, once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are not installed"
    target = cache_dir() / "node_ws"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("server.js", "package.json"):
        shutil.copyfile(NODE_PEER / name, target / name)
    if not (target / "node_modules" / "ws").is_dir():
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            return f"npm install ws failed: {result.stderr.strip()[:200]}"
    return None


def _node_ws(port: int, step: float, clients: int) -> list[str]:
    node = shutil.which("node") or "node"
    return [
        node,
        str(cache_dir() / "node_ws" / "server.js"),
        "--port",
        str(port),
        "--step-seconds",
        str(step),
    ]


_ALL: list[ServerUnderTest] = [
    OneProcess("progress-server", progress_server_argv),
    OneProcess("progress-server-info", _progress_server_info),
    SharedThroughRedis("progress-server-redis", instances=2),
    OneProcess("naive", _python_module("progress_bench.peers.naive")),
    OneProcess("node-ws", _node_ws, _prepare_node),
    OneProcess(
        "aiohttp", _python_module("progress_bench.peers.aiohttp_peer"), _needs_module("aiohttp")
    ),
    OneProcess("floor", _python_module("progress_bench.peers.floor")),
]
SERVERS: dict[str, ServerUnderTest] = {server.name: server for server in _ALL}
#: Measured on demand (``--servers``), not by default: the cost of the metrics, and how
#: far one machine goes.
EXTRA_SERVERS: dict[str, ServerUnderTest] = {
    "progress-server-no-metrics": OneProcess(
        "progress-server-no-metrics", _progress_server_without_metrics
    ),
    # How far one machine goes: workers enough for the clients (--clients 100000).
    "progress-server-workers": ReusePortWorkers("progress-server-workers"),
}

"""The servers under test: how to start each one as its own process."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVERS", "ServerUnderTest"]

NODE_PEER = Path(__file__).parent / "peers" / "node_ws"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "progress-bench"


@dataclass(frozen=True)
class ServerUnderTest:
    """A server the bench can start: ``argv(port, step_seconds, clients)``."""

    name: str
    argv: Callable[[int, float, int], list[str]]
    prepare: Callable[[], str | None] = lambda: None  # a reason to skip it, or None

    def start(
        self, port: int, step_seconds: float, clients: int, log: Path
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(
                self.argv(port, step_seconds, clients),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )


def _python_module(module: str, *extra: str) -> Callable[[int, float, int], list[str]]:
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


def _progress_server(port: int, step: float, clients: int) -> list[str]:
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
        "--log-level",
        "warning",
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


SERVERS: dict[str, ServerUnderTest] = {
    server.name: server
    for server in [
        ServerUnderTest("progress-server", _progress_server),
        ServerUnderTest("naive", _python_module("progress_bench.peers.naive")),
        ServerUnderTest("node-ws", _node_ws, _prepare_node),
        ServerUnderTest(
            "aiohttp", _python_module("progress_bench.peers.aiohttp_peer"), _needs_module("aiohttp")
        ),
        ServerUnderTest("floor", _python_module("progress_bench.peers.floor")),
    ]
}

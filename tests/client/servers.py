"""Real servers for the clients' tests: instances sharing one calculation, and what a
server says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from tests.helpers import ServerProcess, http_request


@asynccontextmanager
async def instances(
    count: int, redis_url: str, redis_prefix: str, *, step: float
) -> AsyncIterator[list[ServerProcess]]:
    """``count`` progress-server processes sharing one calculation through Redis,
    started side by side (each takes a few tenths of a second to start)."""
    args = ("--redis-url", redis_url, "--redis-prefix", redis_prefix, "--step-seconds", str(step))
    servers = [ServerProcess(*args) for _ in range(count)]
    async with AsyncExitStack() as stack:
        for server in servers:
            stack.push_async_callback(server.stop)
        await asyncio.gather(*(server.start() for server in servers))
        yield servers


async def not_found_sentence(port: int, path: str) -> str:
    """The server's own 404 sentence for ``path`` (it lists the HTTP endpoints, which
    come and go): a plain HTTP request gets the same as a refused handshake."""
    status, _, body = await http_request(port, "GET", path)
    assert status == 404
    return str(body["message"])

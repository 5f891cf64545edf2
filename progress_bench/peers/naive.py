"""The naive peer: websockets with its defaults, awaiting send() for each client in turn."""

from __future__ import annotations

import asyncio
import contextlib
import json

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .common import Calculation, arguments, hello

clients: set[ServerConnection] = set()


async def broadcast(message: str) -> None:
    for client in list(clients):
        with contextlib.suppress(ConnectionClosed):
            await client.send(message)


async def main() -> None:
    options = arguments()
    calculation = Calculation(options.step_seconds, broadcast)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(hello())
        await ws.send(calculation.message())
        clients.add(ws)
        try:
            async for raw in ws:
                if json.loads(raw).get("action") == "start":
                    calculation.start()
        except ConnectionClosed:
            pass
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", options.port):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())

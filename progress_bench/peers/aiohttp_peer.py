"""The aiohttp peer: what a user of aiohttp would write, sends gathered concurrently."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from .common import Calculation, arguments, hello

clients: set[web.WebSocketResponse] = set()


async def broadcast(message: str) -> None:
    await asyncio.gather(*(ws.send_str(message) for ws in list(clients)), return_exceptions=True)


async def main() -> None:
    options = arguments()
    calculation = Calculation(options.step_seconds, broadcast)

    async def progress(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        await ws.send_str(hello())
        await ws.send_str(calculation.message())
        clients.add(ws)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT and json.loads(message.data).get("action") == (
                    "start"
                ):
                    calculation.start()
        finally:
            clients.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/progress", progress)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", options.port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())

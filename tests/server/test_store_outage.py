"""The clients hear when the server loses the store its calculation lives in, and when
it has it back: a real redis-server, stopped and started again."""

from __future__ import annotations

from progress_server.server import ProgressServer
from tests.helpers import Watcher
from tests.redis_server import RedisServer
from tests.server.test_cluster import instance


async def test_clients_hear_when_the_store_is_lost_and_back(redis_prefix: str) -> None:
    """Redis stops: every client is told `store` unreachable, and one that joins during
    the outage is told with its first messages; Redis is back: everyone is told it is
    reachable, once."""
    async with RedisServer() as redis:
        server: ProgressServer = await instance(redis.url, redis_prefix, step=60.0)
        try:
            watcher = await Watcher.join(server.url)
            await watcher.until("clients")
            assert not [m for m in watcher.messages if m["type"] == "store"]
            await redis.stop(kill=True)
            await watcher.until("store", reachable=False)
            late = await Watcher.join(server.url)
            told = await late.until("store")
            # Who is here still counts this instance's own clients, live.
            await watcher.until("presence", connections=2)
            kinds = [m["type"] for m in late.messages]
            assert told == {"type": "store", "reachable": False}
            assert kinds.index("store") == kinds.index("history") + 1  # with the first
            await redis.start()
            back = len(watcher.messages)
            await watcher.until("store", after=back, reachable=True)
            await late.until("store", reachable=True)
            stores = [m for m in watcher.messages if m["type"] == "store"]
            assert stores == [
                {"type": "store", "reachable": False},
                {"type": "store", "reachable": True},
            ]
            await watcher.close()
            await late.close()
        finally:
            await server.close()

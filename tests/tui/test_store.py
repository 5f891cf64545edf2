"""progress-tui while its server cannot reach Redis: it says so, the clock stands
still, and both clear when Redis is back (a real redis-server, stopped and started)."""

from __future__ import annotations

from progress_protocol.states import State
from progress_tui.status import STORE_DOWN
from progress_tui.widgets.connection_bar import ConnectionStatusBar
from tests.helpers import http_request
from tests.redis_server import RedisServer
from tests.server.test_cluster import instance
from tests.tui.scripted import until
from tests.tui.test_app import connected, log_text, make_app, notified, showing

SIZE = (120, 30)


def bar(app: object) -> str:
    widget = app.query_one(ConnectionStatusBar)  # type: ignore[attr-defined]
    return str(widget.describe(widget.size.width))


async def test_a_store_outage_is_shown_and_cleared(redis_prefix: str) -> None:
    """Mid-run, Redis stops: the bar says the store is unreachable, the screen's clock
    stops, s and c say why they are refused; Redis back: the bar says Connected again
    and the clock goes on."""
    async with RedisServer() as redis:
        server = await instance(redis.url, redis_prefix, step=60.0)
        try:
            app = make_app(server.url)
            async with app.run_test(size=SIZE) as pilot:
                made = notified(app)
                await connected(pilot)
                await http_request(server.port, "POST", "/start")
                await showing(pilot, State.STARTING)
                assert app.frozen_at is None
                await redis.stop(kill=True)
                await until(pilot, lambda: STORE_DOWN in bar(app), what="the outage in the bar")
                assert app.frozen_at is not None  # the clock stands still
                assert "Store unreachable" in log_text(app)
                await pilot.press("c")
                await until(pilot, lambda: any("cannot reach its store" in m for m in made))
                await redis.start()
                await until(
                    pilot,
                    lambda: STORE_DOWN not in bar(app) and "Connected" in bar(app),
                    what=lambda: f"the outage cleared (the bar says {bar(app)!r})",
                )
                assert app.frozen_at is None
                assert "Store reachable again" in log_text(app)
        finally:
            await server.close()

"""What an operator relies on: metrics, JSON logs, signals, health and readiness."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from progress_server.endpoints import websocket as websocket_endpoint
from progress_server.server import ProgressServer
from tests.helpers import (
    STEP,
    TIME_FACTOR,
    TIMEOUT,
    ServerProcess,
    http_request,
    join,
    recv_type,
    send_json,
    states_until,
)
from tests.proxy import Proxy
from tests.raw import RawClient, send_then_reset


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus-client's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(port: int, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, received, body = await http_request(port, "GET", "/metrics", headers=headers)
    assert status == 200
    assert received["content-type"].startswith("text/plain")
    return samples(body.decode())


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_a_run_goes(server: ProgressServer) -> None:
    """A scrape during and after a run: the counters move with what happened, the gauges
    say what is, the process collectors are there."""
    before = await scrape(server.port)
    assert value(before, "progress_clients") == 0
    assert value(before, "progress_backend_up") == 1
    assert value(before, "process_resident_memory_bytes") > 0
    watcher, _, _ = await join(server.url)
    actor, _, _ = await join(server.url)
    await send_json(actor, {"action": "start"})
    await send_json(actor, {"action": "start"})  # refused: already_running
    await send_json(actor, {"action": "dance"})  # unknown_action
    during = await scrape(server.port)
    assert value(during, "progress_clients") == 2
    assert value(during, "progress_connections_total", result="accepted") == 2
    assert value(during, "progress_messages_received_total", action="start") == 2
    assert value(during, "progress_errors_total", code="already_running") == 1
    assert value(during, "progress_errors_total", code="unknown_action") == 1
    assert value(during, "progress_state_changes_total", state="STARTING") == 1
    await states_until(watcher, "SUCCESS")
    # The broadcast is timed once it is written: the SUCCESS may be here before that.
    scrapes = 2
    async with asyncio.timeout(TIMEOUT):
        while value(after := await scrape(server.port), "progress_broadcast_seconds_count") < 4:
            scrapes += 1
            await asyncio.sleep(0.01)
    assert value(after, "progress_state_changes_total", state="SUCCESS") == 1
    assert value(after, "progress_calculations_total", outcome="SUCCESS") == 1
    assert value(after, "progress_calculation_seconds_count") == 1
    assert value(after, "progress_calculation_seconds_sum") == pytest.approx(3 * STEP)
    # One observation per broadcast, not per client: four states.
    assert value(after, "progress_broadcast_seconds_count") == 4
    # Each scrape before this one, once.
    assert value(after, "progress_http_requests_total", path="/metrics", status="200") == scrapes
    await watcher.close()
    await actor.close()


async def test_metrics_need_the_token_and_count_refusals() -> None:
    """/metrics is behind the token like every endpoint but /healthz and /readyz; each
    refused handshake is counted by why."""
    async with ProgressServer(port=0, token="t0k3n", max_clients=1) as server:
        status, _, _ = await http_request(server.port, "GET", "/metrics")
        assert status == 401
        assert (await http_request(server.port, "GET", "/readyz"))[0] == 200
        with pytest.raises(InvalidStatus):
            await connect(server.url)
        with pytest.raises(InvalidStatus):
            await connect(server.url, origin="https://evil.example")
        ws = await connect(server.url, additional_headers={"Authorization": "Bearer t0k3n"})
        with pytest.raises(InvalidStatus):
            await connect(server.url, additional_headers={"Authorization": "Bearer t0k3n"})
        found = await scrape(server.port, Authorization="Bearer t0k3n")
        assert value(found, "progress_connections_total", result="unauthorized") == 2
        assert value(found, "progress_connections_total", result="forbidden_origin") == 1
        assert value(found, "progress_connections_total", result="server_full") == 1
        assert value(found, "progress_connections_total", result="accepted") == 1
        await ws.close()


async def test_a_flooder_is_counted_as_dropped(server: ProgressServer) -> None:
    flooder, _, _ = await join(server.url)
    for _ in range(300):
        await send_json(flooder, {"action": "status"})
    async with asyncio.timeout(TIMEOUT):
        while (
            value(
                found := await scrape(server.port), "progress_clients_dropped_total", reason="flood"
            )
            < 1
        ):
            await asyncio.sleep(0.02)
    flooder.transport.abort()  # it read nothing: no closing handshake to wait for
    assert value(found, "progress_clients_dropped_total", reason="flood") == 1
    assert value(found, "progress_errors_total", code="rate_limited") > 0


async def test_head_is_answered_on_every_get_endpoint(server: ProgressServer) -> None:
    """curl -I and health checkers: the GET's status and headers, no body."""
    for path in ("/healthz", "/readyz", "/state", "/history", "/metrics"):
        status, headers, body = await http_request(server.port, "HEAD", path)
        assert status == 200, path
        assert int(headers["content-length"]) > 0
        assert body == b""
    status, headers, _ = await http_request(server.port, "PUT", "/state")
    assert status == 405 and headers["allow"] == "GET, HEAD"


async def test_readyz_is_not_ready_while_shutting_down() -> None:
    """Readiness turns 503 as soon as the server starts closing, with the reason."""
    server = ProgressServer(port=0)
    await server.start()
    assert (await http_request(server.port, "GET", "/readyz"))[2] == {"status": "ready"}
    server.service.stop()
    status, _, body = await http_request(server.port, "GET", "/readyz")
    assert (status, body) == (503, {"status": "not_ready", "reason": "shutting down"})
    assert (await http_request(server.port, "GET", "/healthz"))[0] == 200  # still alive
    await server.close()


async def test_json_logs_carry_the_fields_of_each_event() -> None:
    """--log-format json: one object a line, with time, level, logger, message and the
    event's fields, the token nowhere."""
    async with ServerProcess("--log-format", "json", env={"PROGRESS_TOKEN": "t0k3n"}) as server:
        headers = {"Authorization": "Bearer t0k3n", "X-Progress-Name": "alice"}
        async with connect(server.url, additional_headers=headers) as ws:
            hello = await recv_type(ws, "hello")
            await send_json(ws, {"action": "cancel"})
            await recv_type(ws, "error")
        with pytest.raises(InvalidStatus):
            await connect(f"{server.url}?token=wrong")
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    entries = [json.loads(line) for line in server.lines]
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    connected = next(
        e for e in entries if e["message"].startswith("client ") and "connected" in e["message"]
    )
    assert connected["client_id"] == hello["client_id"]
    assert connected["client_name"] == "alice"
    assert connected["peer"].startswith("127.0.0.1:")
    refused = next(e for e in entries if e.get("code") == "not_running")
    assert refused["client_id"] == hello["client_id"]
    unauthorized = next(e for e in entries if e.get("reason") == "unauthorized")
    assert "a wrong token" in unauthorized["message"] and "peer" in unauthorized
    left = next(e for e in entries if "disconnected" in e["message"])
    assert left["code"] == 1000
    log = "\n".join(server.lines)
    assert "t0k3n" not in log and "token=wrong" not in log


async def test_sighup_stops_gracefully() -> None:
    """Closing the terminal that runs the server (SIGHUP): clients get 1001, exit 0."""
    async with ServerProcess() as server:
        ws, _, _ = await join(server.url)
        server.signal(signal.SIGHUP)
        async with asyncio.timeout(TIMEOUT):
            await ws.wait_closed()
        assert ws.close_code == 1001
        assert await server.wait() == 0
    assert any("SIGHUP: stopping" in line for line in server.lines)


async def test_the_logs_say_what_happened_in_plain_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A keepalive drop says "no pong"; "1 client", not "1 clients"; a refused
    handshake names the peer and why."""
    timeout = 0.2 * TIME_FACTOR
    async with ProgressServer(
        port=0, step_seconds=STEP, ping_interval=timeout, ping_timeout=timeout
    ) as server:
        with caplog.at_level("INFO"):
            silent = await RawClient.connect(server.port)  # never answers a ping
            async with asyncio.timeout(TIMEOUT):
                while "no pong within" not in caplog.text:
                    await asyncio.sleep(0.05)
            silent.close()
            watcher, _, _ = await join(server.url)
            await send_json(watcher, {"action": "start"})
            await recv_type(watcher, "state")
            status, _, _ = await http_request(
                server.port, "GET", "/state", headers={"Origin": "https://evil.example"}
            )
            assert status == 403
            await watcher.close()
    assert f"no pong within {timeout:g} s" in caplog.text
    assert "sent to 1 client" in caplog.text and "sent to 1 clients" not in caplog.text
    assert "refused a request from 127.0.0.1:" in caplog.text
    assert "the Origin 'https://evil.example' is not allowed" in caplog.text
    found = samples(server.metrics.exposition().decode())
    assert value(found, "progress_clients_dropped_total", reason="ping_timeout") == 1


async def test_the_warning_about_the_address_comes_after_the_bind() -> None:
    """No --token on a public address: warned once listening, never before a failure."""
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        taken = ServerProcess("--host", "0.0.0.0", "--port", port)
        with pytest.raises(RuntimeError):
            await taken.start()
        await taken.wait()
    assert not any("without --token" in line for line in taken.lines)
    async with ServerProcess("--host", "0.0.0.0") as server:
        async with asyncio.timeout(TIMEOUT):
            while not any("without --token" in line for line in server.lines):
                await asyncio.sleep(0.02)
        listening = next(i for i, line in enumerate(server.lines) if "listening on" in line)
        warned = next(i for i, line in enumerate(server.lines) if "without --token" in line)
        assert warned > listening


async def test_metrics_can_be_turned_off() -> None:
    """--no-metrics: /metrics answers 404 saying so (the bench measures the difference)."""
    async with ProgressServer(port=0, metrics=False) as server:
        status, _, body = await http_request(server.port, "GET", "/metrics")
        assert (status, body["message"]) == (404, "Metrics are off on this server (--no-metrics).")


async def test_a_fatal_error_is_a_json_line_too() -> None:
    """--log-format json: the line that says why the server cannot start is JSON as
    well, the one a log shipper needs most."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = ServerProcess("--log-format", "json", "--port", str(holder.getsockname()[1]))
        with pytest.raises(RuntimeError):
            await server.start()
        assert await server.wait() == 1
    entries = [json.loads(line) for line in server.lines]
    (fatal,) = [entry for entry in entries if entry["level"] == "ERROR"]
    assert "cannot listen on 127.0.0.1:" in fatal["message"]
    assert "already in use" in fatal["message"]


async def test_http_actions_are_logged_with_who_asked(
    server: ProgressServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO"):
        await http_request(server.port, "POST", "/start", headers={"X-Progress-Name": "curl-bob"})
    (record,) = [r for r in caplog.records if "start accepted" in r.getMessage()]
    assert re.fullmatch(r"HTTP 127\.0\.0\.1:\d+ as 'curl-bob': start accepted", record.getMessage())
    assert record.client_name == "curl-bob"  # type: ignore[attr-defined]
    assert record.peer.startswith("127.0.0.1:")  # type: ignore[attr-defined]


async def test_a_burst_of_clients_is_summed_up_in_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past LOG_EACH clients a second (3 here), one line a second says how many more
    came; the same when they leave. Every one of them is in a line or in a sum."""
    monkeypatch.setattr(websocket_endpoint, "LOG_EACH", 3)
    count = 12

    def tally(what: str) -> tuple[int, int]:
        """Clients logged one by one, and in summaries."""
        messages = [record.getMessage() for record in caplog.records]
        marker = " connected from " if what == "connected" else " disconnected, "
        one_by_one = sum(marker in m and m.startswith("client ") for m in messages)
        pattern = re.compile(
            rf"(\d+) more clients? {what} \(now \d+ connected here\), not logged one by one: "
            r"over 3 a second"
        )
        summed = sum(int(match[1]) for m in messages if (match := pattern.fullmatch(m)))
        return one_by_one, summed

    with caplog.at_level("INFO", logger="progress_server.endpoints.websocket"):
        async with ProgressServer(port=0) as server:
            clients = await asyncio.gather(*(connect(server.url) for _ in range(count)))
            async with asyncio.timeout(TIMEOUT):
                while sum(tally("connected")) < count:
                    await asyncio.sleep(0.05)
            await asyncio.gather(*(client.close() for client in clients))
            async with asyncio.timeout(TIMEOUT):
                while sum(tally("disconnected")) < count:
                    await asyncio.sleep(0.05)
    for what in ("connected", "disconnected"):
        one_by_one, summed = tally(what)
        assert summed > 0, f"no summary of {what}"
        assert one_by_one + summed == count


async def test_a_peer_that_resets_after_an_action_is_no_error(
    redis_url: str, redis_prefix: str
) -> None:
    """POST /start then RST (SO_LINGER 0), 40 times, against a real server on uvloop
    with Redis 50 ms away (so that every RST beats its answer): each request is answered
    into the void and logged as usual, a peer gone before its answer is a debug line,
    and the log holds no ERROR and no traceback."""
    pytest.importorskip("uvloop")
    count = 40
    proxy = await Proxy.before(redis_url).start()
    proxy.latency = 0.05
    args = ("--redis-url", proxy.url(), "--redis-prefix", redis_prefix, "--log-level", "debug")
    async with ServerProcess(*args, "--rate-burst", str(2 * count)) as server:
        for _ in range(count):
            await send_then_reset(server.port, b"POST /start HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

        def answered() -> int:
            """Requests that ran to their end, answered or failed."""
            return sum(
                "HTTP POST /start -> " in line or "answering a request failed" in line
                for line in server.lines
            )

        async with asyncio.timeout(TIMEOUT):
            while answered() < count:
                await asyncio.sleep(0.02)
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    await proxy.close()
    log = "\n".join(server.lines)
    assert "event loop: uvloop" in log
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]
    # Every RST went out 100 ms before its answer could (the proxy's round trip); the
    # server notices it before answering on uvloop 0.23 and later, and says so.

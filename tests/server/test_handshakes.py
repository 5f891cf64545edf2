"""Handshakes are bounded in size and in time, before any token or origin is checked."""

from __future__ import annotations

import asyncio
import json

import psutil
import pytest

from progress_server.server import ProgressServer
from progress_server.transport.connection import CLOSE_TIMEOUT
from tests.helpers import TIME_FACTOR, TIMEOUT, ServerProcess, join, recv_type, send_json
from tests.raw import HANDSHAKE, RawClient
from tests.server.test_floods import MiB, flood, masked_frame, peak_rss_during


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status = int(head.split(b" ", 2)[1])
    body = await asyncio.wait_for(reader.read(), TIMEOUT)
    return status, json.loads(body)


async def test_headers_over_16_kib_get_431(server: ProgressServer) -> None:
    """A request whose headers go past 16 KiB in all is answered 431 and closed, though
    every line is within websockets' own limit of 8 KiB."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET /progress HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())
    for number in range(3):
        writer.write(f"X-Padding-{number}: {'a' * 8000}\r\n".encode())
    status, body = await read_response(reader)
    assert status == 431
    assert body["code"] == "request_too_large"
    assert "16 KiB" in str(body["message"])
    writer.close()


async def test_headers_under_the_limit_still_work(server: ProgressServer) -> None:
    """A large but legal request (12 KiB of headers) is served as usual."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    padding = "".join(f"X-Padding-{n}: {'a' * 6000}\r\n" for n in range(2))
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{padding}\r\n".encode())
    status, body = await read_response(reader)
    assert (status, body) == (200, {"status": "ok"})
    writer.close()


async def test_a_handshake_that_never_ends_is_cut_at_the_timeout() -> None:
    """A peer that starts a request and stops is disconnected after handshake_timeout."""
    timeout = 0.2 * TIME_FACTOR
    async with ProgressServer(port=0, handshake_timeout=timeout) as server:
        # From before the connection: its timer cannot start sooner.
        started = asyncio.get_running_loop().time()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /progress HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        waited = asyncio.get_running_loop().time() - started
        assert timeout * 0.9 <= waited < timeout + 1.0 * TIME_FACTOR, (
            f"cut after {waited:.2f} s, with a timeout of {timeout:g} s"
        )
        writer.close()


async def test_400_maximal_handshakes_cost_little_and_block_nobody() -> None:
    """400 connections each try to send a megabyte of headers and hold on: the server
    stays under 128 MiB and a legitimate client is served meanwhile."""
    async with ServerProcess() as server:
        assert server.process is not None
        seconds = 2.0
        flooding = asyncio.ensure_future(flood("handshakes", server.port, 400, seconds))
        async with asyncio.timeout(TIMEOUT):  # half of them are in
            while sum("refused a handshake from" in line for line in server.lines) < 200:
                await asyncio.sleep(0.02)
        client, _, state = await join(server.url)
        await send_json(client, {"action": "status"})
        assert (await recv_type(client, "state"))["seq"] == state["seq"]
        await client.close()
        peak, tally = await peak_rss_during(server.process.pid, flooding)
        assert peak < 128 * MiB, f"the server reached {peak / MiB:.0f} MiB"
        assert psutil.Process(server.process.pid).is_running()
        # Each was answered 431 and closed as soon as it passed 16 KiB, and logged.
        refusals = [line for line in server.lines if "refused a handshake from" in line]
        assert len(refusals) == 400, tally
        assert "its headers are over 16384 bytes" in refusals[0]


async def test_bytes_after_a_request_do_not_cost_it_its_answer(
    server: ProgressServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A second request right behind the first (or any bytes after it) is ignored: the
    first gets its answer, nothing is started, and nothing is logged as an error."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"GET /state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nPOST /start HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    status, body = await read_response(reader)
    assert (status, body["state"]) == (200, "IDLE")
    writer.close()
    assert server.hub is not None and server.hub.snapshot.seq == 0
    assert "ERROR" not in caplog.text and "Traceback" not in caplog.text


async def test_frames_sent_before_the_101_are_kept(server: ProgressServer) -> None:
    """A client that sends its first message right behind its handshake is answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    status = masked_frame(0x1, b'{"action": "status", "request_id": "early"}', fin=True)
    writer.write(HANDSHAKE.format(path="/progress", port=server.port).encode() + status)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101")
    data = b""
    async with asyncio.timeout(TIMEOUT):
        while data.count(b'"type":"state"') < 2:  # the one after hello, and the answer
            data += await reader.read(4096)
    writer.close()


@pytest.mark.parametrize(("size", "status"), [(16 * 1024, 200), (16 * 1024 + 1, 431)])
async def test_the_headers_limit_is_exact(server: ProgressServer, size: int, status: int) -> None:
    """16 KiB of request line and headers in all, blank line included, sent in one write."""
    request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    request += "".join(f"X-Padding-{n}: {'a' * 6000}\r\n" for n in range(2))
    last = "X-Last: "
    request += last + "a" * (size - len(request) - len(last) - 4) + "\r\n\r\n"
    assert len(request) == size
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request.encode())
    assert (await read_response(reader))[0] == status
    writer.close()


async def test_a_peer_that_never_closes_after_its_close_frame_is_cut(
    server: ProgressServer,
) -> None:
    """A close frame and then silence: the server closes its side after the close timeout,
    not at the next keepalive 20 s later."""
    assert server.hub is not None
    peer = await RawClient.connect(server.port)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(TIMEOUT):
        while len(server.connections) != 1:
            await asyncio.sleep(0.01)
    await loop.sock_sendall(peer.sock, masked_frame(0x8, b"\x03\xe8", fin=True))
    sent = loop.time()
    async with asyncio.timeout(TIMEOUT):
        while server.connections:
            await asyncio.sleep(0.01)
    took = loop.time() - sent
    assert took < CLOSE_TIMEOUT + 0.5 * TIME_FACTOR, f"cut {took:.2f} s after its close frame"
    peer.close()

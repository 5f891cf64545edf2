"""Bad input from clients: each is answered or closed as documented; the server goes on."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from progress_server.server import ProgressServer
from tests.helpers import TIMEOUT, http_request, join, recv_json, recv_type, send_json
from tests.raw import open_socket, read_to_end


async def closed_with(ws, code: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    assert ws.close_code == code


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(server: ProgressServer) -> None:
    """A text frame that is not UTF-8 breaks the protocol: the library closes with 1007."""
    ws, _, _ = await join(server.url)
    await ws.send(b'{"action": "\xff\xfe"}', text=True)
    await closed_with(ws, 1007)
    await assert_server_still_works(server)


async def test_a_message_over_the_limit_closes_with_1009() -> None:
    """Over --max-message-bytes (4096 by default): close 1009; at the limit: answered."""
    async with ProgressServer(port=0) as server:
        assert server.config.max_message_bytes == 4096
        ws, _, _ = await join(server.url)
        at_limit = json.dumps({"action": "status", "pad": ""})
        at_limit = at_limit.replace('""', '"' + "x" * (4096 - len(at_limit)) + '"')
        assert len(at_limit.encode()) == 4096
        await ws.send(at_limit)
        assert (await recv_type(ws, "state"))["state"] == "IDLE"
        await ws.send("x" * 4097)
        await closed_with(ws, 1009)
        await assert_server_still_works(server)


async def test_garbage_on_the_tcp_port_drops_that_connection_only(
    server: ProgressServer,
) -> None:
    """Bytes that are no HTTP: that connection is dropped; clients and the API go on."""
    watcher, _, _ = await join(server.url)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    await loop.sock_sendall(sock, b"\x16\x03\x01\x00\xff\x00garbage\r\n\r\n\x00\xff" * 10)
    received = b""
    async with asyncio.timeout(TIMEOUT):
        while chunk := await loop.sock_recv(sock, 4096):
            received += chunk
    sock.close()
    assert received == b"" or received.startswith(b"HTTP/1.1 400")
    await send_json(watcher, {"action": "status"})
    assert (await recv_type(watcher, "state"))["state"] == "IDLE"
    await watcher.close()
    await assert_server_still_works(server)


def client_hello() -> bytes:
    """What a TLS client (a wss:// or https:// URL) sends first: a ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def test_a_tls_hello_on_the_plain_port_is_dropped_at_once() -> None:
    """A TLS ClientHello cannot be the start of an HTTP request: the connection is cut
    as its first bytes arrive, not left waiting for the end of a request line (up to the
    handshake timeout) while the client waits for the server's hello."""
    hello = client_hello()
    async with ProgressServer(port=0, handshake_timeout=10 * TIMEOUT) as server:
        sock = await open_socket(server.port)
        # Up to its first line end: all of it, for a hello that holds none.
        await asyncio.get_running_loop().sock_sendall(sock, hello[: hello.index(b"\n")])
        assert await read_to_end(sock) == b""  # within TIMEOUT, a tenth of the limit
        async with asyncio.timeout(TIMEOUT):
            for connection in list(server.connections):
                await connection.wait_closed()
        sock.close()
        await assert_server_still_works(server)


async def test_a_half_sent_handshake_does_not_block_others(server: ProgressServer) -> None:
    """A client that sends half a request and stalls does not hold anyone up."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    await loop.sock_sendall(sock, b"GET /progress HTTP/1.1\r\nHost: x\r\n")
    await assert_server_still_works(server)
    sock.close()


async def assert_server_still_works(server: ProgressServer) -> None:
    """A new client connects and gets its state; the HTTP API answers."""
    async with connect(server.url, open_timeout=TIMEOUT) as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "hello"
    status, _, body = await http_request(server.port, "GET", "/healthz")
    assert (status, body) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    "text",
    [
        '{"action": "start", "request_id": "\\ud800"}',  # a lone surrogate, escaped in JSON
        '{"action": "start", "request_id": "a\\udfffb"}',
        '{"action": "start", "request_id": "\\u001b[2J"}',  # ESC: echoed, it would reach a terminal
        '{"action": "st\\ud800art"}',
    ],
)
async def test_text_that_cannot_be_sent_back_is_refused_before_any_action(
    server: ProgressServer, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    """A string the server could not encode in its reply (a lone surrogate) or that it
    should not echo (a control character) is invalid_message: nothing starts, the client
    gets its answer and stays connected, and nothing is logged with a traceback."""
    ws, _, _ = await join(server.url)
    await ws.send(text)
    error = await recv_type(ws, "error")
    assert error["code"] == "invalid_message"
    assert error["request_id"] is None
    await send_json(ws, {"action": "status"})
    assert (await recv_type(ws, "state"))["state"] == "IDLE"
    assert "Traceback" not in caplog.text and "ERROR" not in caplog.text
    await ws.close()

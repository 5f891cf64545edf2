"""TLS: wss:// and https:// with a certificate made by the test."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from contextlib import aclosing
from pathlib import Path

import pytest
import trustme

from progress_client.client import ProgressClient
from progress_client.events import Closed, StateReceived
from progress_server.server import ProgressServer
from progress_server.transport.connection import CLOSE_TIMEOUT
from tests.helpers import TIME_FACTOR, TIMEOUT, ServerProcess, command
from tests.raw import HANDSHAKE
from tests.server.test_floods import masked_frame


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certificate(authority: trustme.CA, tmp_path: Path) -> dict[str, str]:
    """A server certificate for 127.0.0.1 and its key, and the CA to trust, as PEM files."""
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    files = {
        "certfile": tmp_path / "server.pem",
        "keyfile": tmp_path / "server.key",
        "cafile": tmp_path / "ca.pem",
    }
    server_cert.cert_chain_pems[0].write_to_path(files["certfile"])
    server_cert.private_key_pem.write_to_path(files["keyfile"])
    authority.cert_pem.write_to_path(files["cafile"])
    return {name: str(path) for name, path in files.items()}


async def first_state(client: ProgressClient) -> StateReceived | Closed:
    async with asyncio.timeout(TIMEOUT), aclosing(client.events()) as events:
        async for event in events:
            if isinstance(event, StateReceived | Closed):
                return event
    raise AssertionError("no event")


async def test_wss_with_the_right_authority(certificate: dict[str, str]) -> None:
    """The server serves wss://; a client trusting the CA connects and gets the state."""
    async with ProgressServer(
        port=0, certfile=certificate["certfile"], keyfile=certificate["keyfile"]
    ) as server:
        assert server.url.startswith("wss://")
        client = ProgressClient(server.url, cafile=certificate["cafile"], reconnect=False)
        event = await first_state(client)
        assert isinstance(event, StateReceived)
        await client.close()


async def test_an_untrusted_certificate_is_refused_clearly(certificate: dict[str, str]) -> None:
    """Without the CA, the client stops at once and says the certificate is not trusted."""
    async with ProgressServer(
        port=0, certfile=certificate["certfile"], keyfile=certificate["keyfile"]
    ) as server:
        event = await first_state(ProgressClient(server.url))
        assert isinstance(event, Closed)
        assert event.reason.startswith("the server's certificate is not trusted")
        assert "--cafile" in event.reason


async def test_https_endpoints(certificate: dict[str, str]) -> None:
    """The HTTP API answers over https:// on the same port."""
    async with ProgressServer(
        port=0, certfile=certificate["certfile"], keyfile=certificate["keyfile"]
    ) as server:
        context = ssl.create_default_context(cafile=certificate["cafile"])

        def get() -> tuple[int, dict]:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", server.port, context=context, timeout=TIMEOUT
            )
            connection.request("GET", "/state")
            response = connection.getresponse()
            result = response.status, json.loads(response.read())
            connection.close()
            return result

        status, body = await asyncio.to_thread(get)
        assert (status, body["state"]) == (200, "IDLE")


async def test_ctl_and_server_commands_over_tls(certificate: dict[str, str]) -> None:
    """progress-server --certfile/--keyfile, progress-ctl --cafile with a wss:// URL."""
    async with ServerProcess(
        "--certfile", certificate["certfile"], "--keyfile", certificate["keyfile"]
    ) as server:
        url = f"wss://127.0.0.1:{server.port}/progress"
        process = await asyncio.create_subprocess_exec(
            command("progress-ctl"),
            "--url",
            url,
            "--cafile",
            certificate["cafile"],
            "status",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
        assert process.returncode == 0, err
        assert out.decode().startswith("IDLE")
        assert any(f"listening on wss://127.0.0.1:{server.port}" in line for line in server.lines)


async def test_a_bad_certificate_file_is_one_line(tmp_path: Path) -> None:
    """A file that is no certificate: one line naming it, exit status 1."""
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    process = await asyncio.create_subprocess_exec(
        command("progress-server"),
        "--port",
        "0",
        "--certfile",
        str(bogus),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 1
    assert f"cannot use the certificate {bogus}" in err.decode()
    assert "Traceback" not in err.decode()


async def test_a_peer_silent_after_its_close_frame_is_cut_over_tls_too(
    certificate: dict[str, str],
) -> None:
    """TLS cannot half-close: the server closes the transport at once, which then waits
    for its own TLS shutdown (30 s). The close timeout still cuts a silent peer."""
    context = ssl.create_default_context(cafile=certificate["cafile"])
    async with ProgressServer(
        port=0, certfile=certificate["certfile"], keyfile=certificate["keyfile"]
    ) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
        writer.write(HANDSHAKE.format(path="/progress", port=server.port).encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        loop = asyncio.get_running_loop()
        writer.write(masked_frame(0x8, b"\x03\xe8", fin=True))
        await writer.drain()
        writer.transport.pause_reading()  # silent: it answers neither frames nor TLS
        sent = loop.time()
        async with asyncio.timeout(TIMEOUT):
            while server.connections:
                await asyncio.sleep(0.01)
        took = loop.time() - sent
        assert took < CLOSE_TIMEOUT + 0.5 * TIME_FACTOR, f"cut {took:.2f} s after its close frame"
        writer.transport.abort()

"""File descriptors, under a real limit set with prlimit."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import shutil
import socket

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from progress_server.transport.descriptors import DescriptorWatch
from tests.helpers import TIME_FACTOR, TIMEOUT, ServerProcess, join

pytestmark = pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit")


async def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    """A soft limit of 200 under a hard one of 4096: the server raises it, and 1000
    clients fit, so it warns of nothing."""
    wrapper = ("prlimit", "--nofile=200:4096")
    async with ServerProcess("--max-clients", "1000", wrapper=wrapper) as server:
        assert server.process is not None
        limits = psutil.Process(server.process.pid).rlimit(resource.RLIMIT_NOFILE)
        assert limits == (4096, 4096)
        assert not any("WARNING" in line for line in server.lines), server.lines


async def test_running_out_of_descriptors_is_said_and_survived() -> None:
    """Under a hard limit of 128: a warning at startup that 1000 clients cannot fit;
    when half-open connections use every descriptor, new clients are refused and the
    log says why, at most once a second; once they go, clients connect again."""
    wrapper = ("prlimit", "--nofile=128:128")
    async with ServerProcess("--max-clients", "1000", wrapper=wrapper) as server:
        warning = "the limit on open files is 128: about 96 clients can connect, not the 1000"
        async with asyncio.timeout(TIMEOUT):
            while not any(warning in line for line in server.lines):
                await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        # From before the first connection the server may fail to accept: the reports
        # are counted over all the time they could come in.
        started = loop.time()
        hogs = []
        for _ in range(140):  # connect and say nothing: each holds a descriptor
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            hogs.append(sock)
        with pytest.raises((OSError, TimeoutError, InvalidMessage)):
            async with connect(server.url, open_timeout=1.0) as refused:
                await refused.recv()
        async with asyncio.timeout(TIMEOUT):
            while not any("out of file descriptors" in line for line in server.lines):
                await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, 2.5 - (loop.time() - started)))
        reports = [line for line in server.lines if "out of file descriptors" in line]
        elapsed = loop.time() - started
        assert 1 <= len(reports) <= elapsed + 1, f"{len(reports)} reports in {elapsed:.1f} s"
        assert "(limit 128, " in reports[0] and "raise the limit" in reports[0]
        for sock in hogs:
            sock.close()
        async with asyncio.timeout(TIMEOUT * TIME_FACTOR):
            while True:
                try:
                    client, _, state = await join(server.url)
                    break
                except (OSError, InvalidMessage):  # reset while the hogs close
                    await asyncio.sleep(0.1)
        assert state["type"] == "state"
        await client.close()
        assert not any("Traceback" in line for line in server.lines)


async def test_asyncio_failed_accepts_become_one_line_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On asyncio's own loop, a failed accept is reported through the loop's exception
    handler a second: it becomes our log line, with no traceback; other errors still go
    to the default handler."""
    watch = DescriptorWatch(lambda: 7)
    loop = asyncio.get_running_loop()
    exhausted = OSError(errno.EMFILE, "Too many open files")
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            watch.handle_loop_exception(
                loop, {"message": "socket.accept() out of system resource", "exception": exhausted}
            )
        watch.handle_loop_exception(loop, {"message": "something else"})
    reports = [r for r in caplog.records if "out of file descriptors" in r.getMessage()]
    assert len(reports) == 1
    assert reports[0].exc_info is None
    assert "7 connections open" in reports[0].getMessage()
    assert "something else" in caplog.text

"""README's console samples, run for real: what it shows is what a user gets.

Each ``$ progress-ctl ...`` line of a ```console block of README.md runs in a shell,
in order, against one real server (``PROGRESS_URL`` points at it), and its output is
compared with the lines the sample shows under it, once times, dates, calculation ids,
durations and names are masked and runs of spaces (a table's alignment, which follows
the masked widths) are made one. A command the sample shows no output for (``watch``,
which runs until stopped) illustrates an option and is not run.

The server is a :class:`~tests.helpers.SteppedServer` with README's 2 s steps, whose
calculation moves when the test says: after each running state ``start --wait`` prints,
so the sample takes no real time, and ``cancel`` finds the run it cancels still running.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from progress_client.client import ProgressClient
from progress_client.events import StateReceived
from tests.helpers import TIMEOUT, SteppedServer, Watcher, command

README = Path(__file__).resolve().parents[2] / "README.md"

#: What varies from one run to the next, and what it is masked with.
MASKS = [
    (re.compile(r"\b\d{4}-\d\d-\d\d\b"), "DATE"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "TIME"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "ID"),
    (re.compile(r"\b\d+(?:\.\d)? (?:s|min|h|d)(?: \d+ (?:s|min|h))?\b"), "DURATION"),
    (re.compile(r"[\w.-]+@[\w.-]+"), "NAME"),
]
RUNNING = ("STARTING ", "IN_PROGRESS ", "ALMOST_DONE ")


@dataclass
class Sample:
    """One ``$ command`` of a console block and the output shown under it."""

    command: str
    output: list[str] = field(default_factory=list)


def console_samples(text: str, program: str) -> list[Sample]:
    """The ``$ program ...`` commands of every console block, each with its output."""
    samples: list[Sample] = []
    for block in re.findall(r"^```console\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        current: Sample | None = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = None
                if line[2:].startswith(f"{program} "):
                    # A comment after the command is for the reader.
                    current = Sample(re.sub(r"\s+#.*$", "", line[2:]))
                    samples.append(current)
            elif current is not None:
                current.output.append(line)
    return samples


def masked(line: str) -> str:
    for pattern, mask in MASKS:
        line = pattern.sub(mask, line)
    return " ".join(line.split())


class Readme2sServer(SteppedServer):
    STEP = 2.0  # README's samples are of the default step


@pytest.fixture
async def readme_server() -> AsyncIterator[Readme2sServer]:
    async with Readme2sServer() as server:
        yield server


async def watching_as_bob(url: str) -> tuple[ProgressClient, asyncio.Task[None]]:
    """A TUI's connection (as progress-tui names itself) for bob@desk, who is shown
    watching in `progress-ctl who`; returned once the server has it."""
    bob = ProgressClient(url, name="bob@desk", agent="progress-tui", reconnect=False)
    joined = asyncio.Event()

    async def follow() -> None:
        async for event in bob.events():
            if isinstance(event, StateReceived):
                joined.set()

    task = asyncio.create_task(follow())
    await asyncio.wait_for(joined.wait(), TIMEOUT)
    return bob, task


async def run_sample(server: SteppedServer, sample: Sample) -> tuple[int, list[str], str]:
    """Run the sample's command in a shell, stepping the calculation after each running
    state it prints when it waits for the run; its status, output lines and stderr."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("PROGRESS_")
    }
    environment.update(
        PATH=f"{Path(command('progress-ctl')).parent}{os.pathsep}{os.environ['PATH']}",
        PROGRESS_URL=server.url,
        PROGRESS_NAME="alice@laptop",
    )
    process = await asyncio.create_subprocess_shell(
        sample.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(2 * TIMEOUT):
        async for raw in process.stdout:
            line = raw.decode().rstrip("\n")
            lines.append(line)
            if "--wait" in sample.command and line.startswith(RUNNING):
                await server.step()
        status = await process.wait()
        err = (await process.stderr.read()).decode()
    return status, lines, err


async def test_readme_progress_ctl_samples_are_what_it_prints(
    readme_server: Readme2sServer,
) -> None:
    """Every progress-ctl sample of README prints what README shows, in README's order,
    against a fresh server (a TUI of bob@desk watching beside)."""
    samples = console_samples(README.read_text(), "progress-ctl")
    run = [sample for sample in samples if sample.output]
    assert len(run) >= 6, f"README's progress-ctl samples were not found: {samples}"
    bob, following = await watching_as_bob(readme_server.url)
    try:
        for sample in run:
            status, lines, err = await run_sample(readme_server, sample)
            assert (status, err) == (0, ""), f"$ {sample.command}"
            got = [masked(line) for line in lines]
            shown = [masked(line) for line in sample.output]
            assert got == shown, f"$ {sample.command}\n" + "\n".join(lines)
    finally:
        await bob.close()
        await following


async def test_readme_websocket_session_shows_the_messages_a_client_gets(
    readme_server: Readme2sServer,
) -> None:
    """README's session with websockets' client shows, before the first action, the
    messages a joining client really gets, of the same types and in the same order."""
    text = README.read_text()
    block = text[text.index("$ .venv/bin/python -m websockets") :]
    block = block[: block.index("```")]
    shown = []
    for line in block.splitlines():
        if line.startswith("> "):
            break
        if line.startswith("< "):
            shown.append(re.search(r'"type":"(\w+)"', line).group(1))  # type: ignore[union-attr]
    watcher = await Watcher.join(readme_server.url)
    await watcher.until("clients")
    await watcher.close()
    assert [message["type"] for message in watcher.messages[: len(shown)]] == shown
    assert shown == ["hello", "state", "history", "presence", "clients"]

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, settings

from progress_server.server import ProgressServer
from tests.helpers import STEP, SteppedServer
from tests.redis_server import running_redis

# A busy machine slows the making of examples down, not the code under test: the health
# check that fails a test when they come slowly would fail it for the machine.
settings.register_profile("progress", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("progress")

# Ctrl-C must reach the processes the tests start and interrupt (progress-ctl watch, the
# servers). A shell without job control (a script, CI) starts a background command with
# SIGINT ignored (POSIX), every process below inherits that, and Python then leaves it
# ignored: such a run's progress-ctl watch never ended on its Ctrl-C.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
async def server() -> AsyncIterator[ProgressServer]:
    """A real server on a free port, with tiny steps."""
    async with ProgressServer(port=0, step_seconds=STEP) as running:
        yield running


@pytest.fixture
async def stepped() -> AsyncIterator[SteppedServer]:
    """A real server on a free port whose calculation moves only at ``await
    stepped.step()``: for a test that acts within a state, however busy the machine."""
    running = SteppedServer()
    async with running:
        yield running


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One private redis-server for the session; each test takes its own key prefix."""
    with running_redis() as url:
        yield url


@pytest.fixture
def redis_prefix() -> str:
    """Keys of this test only, so that the tests sharing one Redis never meet."""
    return f"test-{uuid.uuid4().hex[:8]}:"

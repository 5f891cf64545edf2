from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from progress_server.server import ProgressServer
from tests.helpers import STEP


@pytest.fixture
async def server() -> AsyncIterator[ProgressServer]:
    """A real server on a free port, with tiny steps."""
    async with ProgressServer(port=0, step_seconds=STEP) as running:
        yield running

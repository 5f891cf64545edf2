"""The calculation service without sockets: every action ends in an ack or an error,
decided, counted and logged once, whichever endpoint asked."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from progress_protocol.messages import Ack, Error, ErrorCode
from progress_protocol.states import Attribution, StateSnapshot
from progress_server.backends.base import BackendUnavailable
from progress_server.backends.memory import MemoryBackend
from progress_server.backends.redis import RedisBackend
from progress_server.config import ServerConfig
from progress_server.metrics import Metrics
from progress_server.service import CalculationService
from tests.helpers import STEP, HeldBackend
from tests.server.test_operations import samples, value

ALICE = Attribution("84cab819dd9c", "alice")


class FailingBackend(MemoryBackend):
    """Its starts raise ``failure``; its cancels work."""

    def __init__(self, failure: Exception) -> None:
        super().__init__(step_seconds=STEP)
        self.failure = failure

    async def start_calculation(self, by: Attribution | None = None) -> StateSnapshot:
        raise self.failure


async def started(backend: MemoryBackend) -> CalculationService:
    service = CalculationService(ServerConfig(), backend, Metrics())
    await service.start()
    return service


@pytest.fixture
async def service() -> AsyncIterator[CalculationService]:
    service = await started(MemoryBackend(step_seconds=STEP))
    yield service
    await service.aclose()


def errors(service: CalculationService, code: ErrorCode) -> float:
    found = samples(service.metrics.exposition().decode())
    return value(found, "progress_errors_total", code=code.value)


def only_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.name == "progress_server.service"]
    return record


async def test_an_accepted_action_is_an_ack(
    service: CalculationService, caplog: pytest.LogCaptureFixture
) -> None:
    """start answers an ack with the new calculation's id and the request's id; it is
    logged with who asked, and counts no error."""
    with caplog.at_level(logging.INFO, "progress_server.service"):
        ack = await service.perform("start", "r1", ALICE)
    assert isinstance(ack, Ack)
    assert (ack.action, ack.request_id) == ("start", "r1")
    assert ack.calculation_id == (await service.backend.snapshot()).calculation_id
    record = only_record(caplog)
    assert record.getMessage() == "client 84cab819dd9c as 'alice': start accepted"
    assert (record.client_id, record.client_name) == ("84cab819dd9c", "alice")  # type: ignore[attr-defined]
    assert not any(errors(service, code) for code in ErrorCode)


async def test_a_refused_action_is_an_error(
    service: CalculationService, caplog: pytest.LogCaptureFixture
) -> None:
    """A start while one runs: already_running with a sentence and the request's id,
    logged once with its code, counted once."""
    assert isinstance(await service.perform("start"), Ack)
    with caplog.at_level(logging.INFO, "progress_server.service"):
        outcome = await service.perform("start", "r2", ALICE)
    assert isinstance(outcome, Error)
    assert (outcome.code, outcome.request_id) == (ErrorCode.ALREADY_RUNNING, "r2")
    assert outcome.message.endswith(".")
    record = only_record(caplog)
    assert record.getMessage() == "client 84cab819dd9c as 'alice': start refused: already_running"
    assert record.code == ErrorCode.ALREADY_RUNNING  # type: ignore[attr-defined]
    assert errors(service, ErrorCode.ALREADY_RUNNING) == 1


async def test_a_cancel_with_nothing_running_is_not_running(service: CalculationService) -> None:
    """cancel while IDLE: not_running, counted once; the state is untouched."""
    before = await service.backend.snapshot()
    outcome = await service.perform("cancel", None, ALICE)
    assert isinstance(outcome, Error) and outcome.code == ErrorCode.NOT_RUNNING
    assert errors(service, ErrorCode.NOT_RUNNING) == 1
    assert await service.backend.snapshot() == before


async def test_a_store_out_of_reach_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    """BackendUnavailable: an unavailable error carrying the backend's sentence, logged
    at INFO (it is no bug), counted."""
    service = await started(FailingBackend(BackendUnavailable("Redis is out of reach.")))
    try:
        with caplog.at_level(logging.INFO, "progress_server.service"):
            outcome = await service.perform("start", "r3", ALICE)
        assert outcome == Error(ErrorCode.UNAVAILABLE, "Redis is out of reach.", "r3")
        record = only_record(caplog)
        assert record.levelno == logging.INFO and record.exc_info is None
        assert record.getMessage() == (
            "client 84cab819dd9c as 'alice': start refused: the store is unreachable"
        )
        assert errors(service, ErrorCode.UNAVAILABLE) == 1
    finally:
        await service.aclose()


async def test_an_unexpected_exception_is_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anything else the backend raises is a bug: internal_error, with no internals in
    its message, logged as an error with the traceback, counted; the next action works."""
    service = await started(FailingBackend(RuntimeError("injected fault")))
    try:
        with caplog.at_level(logging.INFO, "progress_server.service"):
            outcome = await service.perform("start", "r4", ALICE)
        assert isinstance(outcome, Error)
        assert (outcome.code, outcome.request_id) == (ErrorCode.INTERNAL_ERROR, "r4")
        assert "injected" not in outcome.message
        record = only_record(caplog)
        assert record.levelno == logging.ERROR and record.exc_info is not None
        assert "injected fault" in caplog.text
        assert errors(service, ErrorCode.INTERNAL_ERROR) == 1
        assert isinstance(await service.perform("cancel"), Error)  # not_running: it works
    finally:
        await service.aclose()


async def test_an_http_caller_is_named_by_its_peer(
    service: CalculationService, caplog: pytest.LogCaptureFixture
) -> None:
    """No client id: the log says HTTP, the peer, and the name the request gave."""
    by = Attribution(None, "curl-bob")
    with caplog.at_level(logging.INFO, "progress_server.service"):
        await service.perform("start", None, by, peer="127.0.0.1:50112")
    record = only_record(caplog)
    assert record.getMessage() == "HTTP 127.0.0.1:50112 as 'curl-bob': start accepted"
    assert record.peer == "127.0.0.1:50112"  # type: ignore[attr-defined]
    assert record.client_name == "curl-bob"  # type: ignore[attr-defined]
    assert record.client_id is None  # type: ignore[attr-defined]


async def test_the_service_starts_and_stops_itself() -> None:
    """Not ready until started; started, it has its hub and serves; stopped, it says
    why and lets nobody join; closed, its backend is closed and the hub hears no more."""
    backend = HeldBackend(step_seconds=STEP)
    service = CalculationService(ServerConfig(), backend, Metrics())
    assert (service.not_ready, service.serving, service.hub) == ("starting", False, None)
    await service.start()
    assert service.hub is not None
    assert (service.not_ready, service.serving) == (None, True)
    assert service.snapshot == await backend.snapshot()
    service.stop()
    assert (service.not_ready, service.serving) == ("shutting down", False)
    await service.aclose()
    assert backend.events == ["backend closed"]


async def test_the_store_is_timed(redis_url: str, redis_prefix: str) -> None:
    """The backend's round trips feed the latency histogram (on_latency)."""
    backend = RedisBackend(redis_url, prefix=redis_prefix, step_seconds=STEP)
    service = CalculationService(ServerConfig(), backend, Metrics())
    await service.start()
    try:
        assert isinstance(await service.perform("start"), Ack)
        found = samples(service.metrics.exposition().decode())
        assert value(found, "progress_backend_latency_seconds_count") >= 1
    finally:
        await service.aclose()

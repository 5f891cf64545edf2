"""The HTTP API on the WebSocket port, and the gate every request passes, handshakes too.

``GET /healthz`` (liveness), ``GET /readyz`` (readiness), ``GET /metrics``
(Prometheus), ``GET /state``, ``GET /history``, ``GET /presence``, ``POST /start`` and
``POST /cancel``;
every GET answers HEAD too. The actions go through the same
:class:`~progress_server.service.CalculationService` as their WebSocket twins, which
decides their outcome; here it only becomes a status (:data:`ERROR_STATUS`). The bodies
are the protocol's own JSON objects.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
from collections.abc import Awaitable, Callable

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from progress_protocol.messages import Ack, Command, ErrorCode, History, StateMessage, to_dict
from progress_protocol.states import Attribution

from ..access import Access
from ..auth import (
    host_allowed,
    origin_allowed,
    presented_name,
    presented_token,
    request_hosts,
    split_target,
)
from ..limits import AddressLimits
from ..metrics import CONTENT_TYPE
from ..redaction import safe_path
from ..service import CalculationService
from ..transport.connection import GuardedConnection
from ..transport.responses import error_response, json_response
from ..users import User, client_kind

__all__ = ["ERROR_STATUS", "HttpApi"]

logger = logging.getLogger(__name__)

Handler = Callable[[Request, GuardedConnection], Awaitable[Response]]

#: The status of each error an action can end in; 202 is an ack's.
ERROR_STATUS: dict[str, http.HTTPStatus] = {
    ErrorCode.FORBIDDEN: http.HTTPStatus.FORBIDDEN,
    ErrorCode.ALREADY_RUNNING: http.HTTPStatus.CONFLICT,
    ErrorCode.NOT_RUNNING: http.HTTPStatus.CONFLICT,
    ErrorCode.UNAVAILABLE: http.HTTPStatus.SERVICE_UNAVAILABLE,  # with Retry-After: 1
    ErrorCode.INTERNAL_ERROR: http.HTTPStatus.INTERNAL_SERVER_ERROR,
}


class HttpApi:
    """Answers every HTTP request that is not a WebSocket handshake."""

    #: The paths of the HTTP API; the WebSocket endpoint cannot take one of them.
    PATHS = (
        "/healthz",
        "/readyz",
        "/metrics",
        "/state",
        "/history",
        "/presence",
        "/start",
        "/cancel",
    )
    #: What health checkers and probes call: answered without the token.
    OPEN_PATHS = ("/healthz", "/readyz")

    def __init__(self, service: CalculationService, access: Access | None = None) -> None:
        self.service = service
        #: Who holds which credential.
        self.access = access if access is not None else Access(token=service.config.token)
        self.table: dict[str, tuple[str, Handler]] = {
            "/healthz": ("GET", self.healthz),
            "/readyz": ("GET", self.readyz),
            "/metrics": ("GET", self.metrics),
            "/state": ("GET", self.state),
            "/history": ("GET", self.history),
            "/presence": ("GET", self.presence),
            "/start": ("POST", self.start),
            "/cancel": ("POST", self.cancel),
        }
        config = service.config
        # The HTTP actions come on short connections: their budget is per address.
        self.action_limits = AddressLimits(config.rate_limit, config.rate_burst)

    def process_request(
        self, connection: GuardedConnection, request: Request
    ) -> Response | Awaitable[Response] | None:
        """None lets a WebSocket handshake go on; a Response, or an awaitable of one for
        the HTTP endpoints, answers. The handshake's path never awaits anything."""
        authority, path = split_target(request.path)
        response = self._gate(path, authority, request, connection)
        if response is None:
            if path != self.service.config.path:
                return self._answer(path, request, connection)
            response = self._websocket(path, request, connection)
            if response is None:
                return None
        return self._finish(path, request, connection, response)

    async def _answer(self, path: str, request: Request, connection: GuardedConnection) -> Response:
        return self._finish(path, request, connection, await self._route(path, request, connection))

    def _finish(
        self, path: str, request: Request, connection: GuardedConnection, response: Response
    ) -> Response:
        """Count and log an HTTP answer; a HEAD gets the GET's headers only."""
        known = path if path in self.table or path == self.service.config.path else "other"
        self.service.metrics.http_requests.labels(known, str(response.status_code)).inc()
        level = logging.DEBUG if path in self.OPEN_PATHS or path == "/metrics" else logging.INFO
        if logger.isEnabledFor(level):
            shown = self._shown(path)
            logger.log(
                level,
                "HTTP %s %s -> %d",
                request.method,
                shown,
                response.status_code,
                extra={"peer": connection.peer, "path": shown, "status": response.status_code},
            )
        if request.method == "HEAD":
            # The GET answer's headers, Content-Length included, and no body.
            response = Response(response.status_code, response.reason_phrase, response.headers, b"")
        return response

    def _shown(self, path: str) -> str:
        """The path as the log shows it: decoded, bounded, the token masked."""
        token = self.service.config.token
        return safe_path(path, secrets=(token,) if token else ())

    def _gate(
        self, path: str, authority: str | None, request: Request, connection: GuardedConnection
    ) -> Response | None:
        """Refuse a request for a foreign host, from a foreign origin, or without the
        token; each refusal is counted and logged with the peer and why, never the token.

        The host is the target's own when it is in absolute form (``GET http://name/``),
        else Host's: a request cannot name one host to the check and another to the
        server.
        """
        config = self.service.config
        hosts = request_hosts(request.headers, authority)
        if not host_allowed(config.allowed_hosts, hosts, loopback=config.loopback):
            host = ", ".join(hosts)
            self._refused(
                connection, path, ErrorCode.FORBIDDEN_HOST, f"the host {host!r} is not allowed"
            )
            return error_response(
                http.HTTPStatus.FORBIDDEN,
                ErrorCode.FORBIDDEN_HOST,
                f"This server answers to localhost only, not to {host!r}; start it with "
                "--allow-host NAME to answer to another name.",
            )
        if not origin_allowed(config.allowed_origins, request.headers, hosts=hosts, tls=config.tls):
            origin = ", ".join(request.headers.get_all("Origin"))
            self._refused(
                connection,
                path,
                ErrorCode.FORBIDDEN_ORIGIN,
                f"the Origin {origin!r} is not allowed",
            )
            return error_response(
                http.HTTPStatus.FORBIDDEN,
                ErrorCode.FORBIDDEN_ORIGIN,
                "Web pages from this origin may not use this server; start it with "
                "--allow-origin ORIGIN to allow them.",
            )
        if path in self.OPEN_PATHS:
            return None
        open_to_all = self.access.mode == "open"
        presented = None if open_to_all else presented_token(request.headers, request.path)
        entry = self.access.identify(presented)
        if entry is None:
            why = "no token" if presented is None else "a wrong token"
            self._refused(connection, path, ErrorCode.UNAUTHORIZED, why)
            return error_response(
                http.HTTPStatus.UNAUTHORIZED,
                ErrorCode.UNAUTHORIZED,
                "This server needs a token: send 'Authorization: Bearer <token>' "
                "or add ?token=<token> to the URL.",
                headers={"WWW-Authenticate": 'Bearer realm="progress"'},
            )
        # Who it is, for the hub's presence and the attribution of its actions: the
        # token's name with a tokens file (what the client claims is only logged).
        claimed = presented_name(request.headers, request.path)
        kind = client_kind(request.headers.get("User-Agent"))
        if entry.digest:
            connection.user = _user(entry.name, entry.role, kind, entry.digest, claimed)
        else:
            connection.user = _user(claimed, entry.role, kind, None, None)
        return None

    def _refused(
        self, connection: GuardedConnection, path: str, result: ErrorCode, why: str
    ) -> None:
        self.service.metrics.connections.labels(result).inc()
        peer = connection.peer
        shown = self._shown(path)
        logger.info(
            "refused a request from %s for %s: %s",
            peer,
            shown,
            why,
            extra={"peer": peer, "path": shown, "reason": result},
        )

    def _websocket(
        self, path: str, request: Request, connection: GuardedConnection
    ) -> Response | None:
        """Refuse a handshake the server cannot take; None lets websockets check it."""
        if request.method != "GET":
            return self._method_not_allowed(request.method, path, "GET")
        if self.service.full:
            self._refused(connection, path, ErrorCode.SERVER_FULL, "the server is full")
            return error_response(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                ErrorCode.SERVER_FULL,
                f"The server is full ({self.service.config.max_clients} clients); try again later.",
                headers={"Retry-After": "5"},
            )
        return None  # websockets answers 426 to a GET that is not an upgrade.

    async def _route(self, path: str, request: Request, connection: GuardedConnection) -> Response:
        route = self.table.get(path)
        if route is None:
            return error_response(
                http.HTTPStatus.NOT_FOUND,
                ErrorCode.NOT_FOUND,
                f"There is nothing at {path}. The WebSocket endpoint is "
                f"{self.service.config.path}; the HTTP endpoints are GET /healthz, "
                "GET /readyz, GET /metrics, GET /state, GET /history, GET /presence, "
                "POST /start and POST /cancel.",
            )
        method, handler = route
        allowed = "GET, HEAD" if method == "GET" else method
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return self._method_not_allowed(request.method, path, allowed)
        if method == "POST" and not self._within_budget(connection):
            self._refused(connection, path, ErrorCode.RATE_LIMITED, "too many requests")
            return error_response(
                http.HTTPStatus.TOO_MANY_REQUESTS,
                ErrorCode.RATE_LIMITED,
                "Too many requests from this address: this one was dropped. Slow down.",
                headers={"Retry-After": "1"},
            )
        return await handler(request, connection)

    def _within_budget(self, connection: GuardedConnection) -> bool:
        return self.action_limits.take(_address(connection), asyncio.get_running_loop().time())

    def _method_not_allowed(self, method: str, path: str, allowed: str) -> Response:
        return error_response(
            http.HTTPStatus.METHOD_NOT_ALLOWED,
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{path} accepts {allowed} only, not {method}.",
            headers={"Allow": allowed},
        )

    async def healthz(self, request: Request, connection: GuardedConnection) -> Response:
        """Liveness: the process answers. A store out of reach does not make it dead:
        restarting it would drop every client and forget the last state it knows (which
        it writes back to a Redis that lost it), so that is /readyz's business; the body
        still says it."""
        problem = self.service.backend.problem
        if problem is not None:
            return json_response(http.HTTPStatus.OK, {"status": "ok", "backend": problem})
        return json_response(http.HTTPStatus.OK, {"status": "ok"})

    async def readyz(self, request: Request, connection: GuardedConnection) -> Response:
        """Readiness: send clients here? Not while starting, stopping, or cut off."""
        reason = self.service.not_ready
        if reason is not None:
            return json_response(
                http.HTTPStatus.SERVICE_UNAVAILABLE, {"status": "not_ready", "reason": reason}
            )
        return json_response(http.HTTPStatus.OK, {"status": "ready"})

    async def metrics(self, request: Request, connection: GuardedConnection) -> Response:
        if not self.service.config.metrics:
            return error_response(
                http.HTTPStatus.NOT_FOUND,
                ErrorCode.NOT_FOUND,
                "Metrics are off on this server (--no-metrics).",
            )
        body = self.service.scrape()
        headers = Headers(
            [
                ("Content-Type", CONTENT_TYPE),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        return Response(http.HTTPStatus.OK.value, http.HTTPStatus.OK.phrase, headers, body)

    async def state(self, request: Request, connection: GuardedConnection) -> Response:
        return json_response(http.HTTPStatus.OK, to_dict(StateMessage(self.service.snapshot)))

    async def history(self, request: Request, connection: GuardedConnection) -> Response:
        return json_response(http.HTTPStatus.OK, to_dict(History(self.service.history)))

    async def presence(self, request: Request, connection: GuardedConnection) -> Response:
        return json_response(http.HTTPStatus.OK, to_dict(self.service.presence))

    async def start(self, request: Request, connection: GuardedConnection) -> Response:
        return await self._perform("start", request, connection)

    async def cancel(self, request: Request, connection: GuardedConnection) -> Response:
        return await self._perform("cancel", request, connection)

    async def _perform(
        self, command: Command, request: Request, connection: GuardedConnection
    ) -> Response:
        self.service.metrics.messages.labels(command).inc()
        # Attributed to its token's name, else the name the request gives, else its
        # address.
        user = connection.user
        assert user is not None  # the gate let it through
        by = Attribution(None, user.name or f"http {_address(connection)}")
        outcome = await self.service.perform(command, None, by, user=user, peer=connection.peer)
        if isinstance(outcome, Ack):
            return json_response(http.HTTPStatus.ACCEPTED, to_dict(outcome))
        status = ERROR_STATUS.get(outcome.code, http.HTTPStatus.INTERNAL_SERVER_ERROR)
        return json_response(
            status,
            to_dict(outcome),
            headers={"Retry-After": "1"} if status is http.HTTPStatus.SERVICE_UNAVAILABLE else None,
        )


@functools.lru_cache(maxsize=1024)
def _user(
    name: str | None, role: str, kind: str, credential: bytes | None, claimed: str | None
) -> User:
    """One object for the many connections of one person on one kind of client."""
    return User(name, role, kind, credential, claimed)


def _address(connection: GuardedConnection) -> str:
    """The peer's IP address, without its port (read when it connected: the peer may be
    gone by the time its answer is ready)."""
    address = connection.remote_address
    return str(address[0]) if isinstance(address, tuple) and address else "unknown"

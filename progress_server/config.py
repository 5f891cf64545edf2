"""Every setting of a server instance, with its default; docs/reliability.md explains each."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from progress_protocol.states import DEFAULT_STEP_SECONDS

__all__ = ["DEFAULT_HOST", "DEFAULT_PATH", "DEFAULT_PORT", "ServerConfig"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3003
DEFAULT_PATH = "/progress"


@dataclass(frozen=True)
class ServerConfig:
    """The settings of one :class:`~progress_server.server.ProgressServer`.

    Attributes:
        host: The interface to listen on.
        port: The TCP port; 0 picks a free one.
        path: The WebSocket endpoint's path.
        step_seconds: The length of each of the three steps.
        max_message_bytes: The largest message a client may send; larger: close 1009.
        max_clients: Connected clients at most; the next handshake gets HTTP 503.
        rate_limit: Messages per second a client may send, on average.
        rate_burst: Messages a client may send at once.
        flood_tolerance: Refused messages (refilled at ``rate_limit``) before close 1008.
        ping_interval: Seconds between keepalive pings to each client.
        ping_timeout: Seconds a pong may take before the client counts as dead.
        send_buffer_limit: Bytes queued for one client past which it is skipped.
        send_buffer_cap: Bytes queued for one client past which it is dropped at once.
        stuck_timeout: Seconds a client may stay past the buffer limit before it is closed.
        max_handshake_bytes: Size of a request's line and headers at most; larger: 431.
        handshake_timeout: Seconds a connection may take to complete its handshake.
        token: When set, every client and every HTTP request but /healthz must present it.
        tokens_file: Per-user tokens (a name, a role, a hash each), re-read when it
            changes; every client and request must present one of them. Not with
            ``token``.
        allowed_origins: Browser origins allowed besides the server's own; ``("*",)``
            allows any. A request with another Origin header gets 403.
        allowed_hosts: Host header names allowed besides the loopback ones, when
            listening on loopback; ``("*",)`` allows any. Others get 403.
        reuse_port: Bind with ``SO_REUSEPORT``, beside the other workers of ``--workers``.
        metrics: Serve ``GET /metrics`` and time every broadcast for it.
        certfile: PEM certificate (chain) to serve wss:// and https://.
        keyfile: PEM private key for ``certfile`` (when not inside it).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    path: str = DEFAULT_PATH
    step_seconds: float = DEFAULT_STEP_SECONDS
    max_message_bytes: int = 4096
    max_clients: int = 10_000
    rate_limit: float = 20.0
    rate_burst: int = 40
    flood_tolerance: int = 100
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    send_buffer_limit: int = 64 * 1024
    send_buffer_cap: int = 256 * 1024
    stuck_timeout: float = 30.0
    max_handshake_bytes: int = 16 * 1024
    handshake_timeout: float = 5.0
    token: str | None = None
    tokens_file: str | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    reuse_port: bool = False
    metrics: bool = True
    certfile: str | None = None
    keyfile: str | None = None

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @functools.cached_property  # read on every request
    def loopback(self) -> bool:
        """Whether only this machine can reach the server."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

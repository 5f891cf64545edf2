"""Prometheus metrics of one server instance, served at ``GET /metrics``.

Counting stays off the hot path: a broadcast is counted once, not once per recipient,
and the gauges (clients, lagging clients, backend up) are read when Prometheus scrapes,
not kept up to date on every connection.

With ``--workers N`` every worker counts into prometheus-client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor): whichever worker answers a scrape
reports the sum over all of them (gauges: see each one's ``multiprocess_mode``).
docs/operations.md says what each metric means and which to alert on.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from progress_protocol.states import StateSnapshot

__all__ = ["CONTENT_TYPE", "MULTIPROCESS_VARIABLE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: From a quarter of a millisecond to seconds: one broadcast to 10,000 clients takes
#: about 140 ms on a 2-core machine.
BROADCAST_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
#: A Redis round trip: sub-millisecond on loopback, tens of ms across a network.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
#: A calculation lasts three steps (6 s by default) or less when canceled.
CALCULATION_BUCKETS = (0.1, 0.5, 1, 2, 4, 6, 8, 15, 30, 60, 300, 3600)


class Metrics:
    """The metrics of one server instance, in a registry of its own (several servers
    in one process, as in the tests, do not mix their numbers)."""

    def __init__(self) -> None:
        self.multiprocess = MULTIPROCESS_VARIABLE in os.environ
        registry = self.registry = CollectorRegistry(auto_describe=True)
        if not self.multiprocess:
            # In multiprocess mode these describe only the process that answers.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.clients = Gauge(
            "progress_clients",
            "Clients connected to this server now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cluster_clients = Gauge(
            "progress_cluster_clients",
            "Clients connected to every instance sharing the calculation (with Redis).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.connections = Counter(
            "progress_connections",
            "Connection attempts by result: accepted, or why they were refused.",
            ["result"],
            registry=registry,
        )
        #: Its most frequent child, looked up once rather than per connection.
        self.accepted = self.connections.labels("accepted")
        self.dropped = Counter(
            "progress_clients_dropped",
            "Clients the server cut off, by reason.",
            ["reason"],
            registry=registry,
        )
        self.messages = Counter(
            "progress_messages_received",
            "Messages received from clients, by action (invalid when unreadable).",
            ["action"],
            registry=registry,
        )
        self.errors = Counter(
            "progress_errors",
            "Error messages sent to clients, by code.",
            ["code"],
            registry=registry,
        )
        self.actions = Counter(
            "progress_actions",
            "Starts and cancels asked for, over WebSocket and HTTP, by role and outcome "
            "(accepted, or the error code); never by name.",
            ["action", "role", "outcome"],
            registry=registry,
        )
        self.http_requests = Counter(
            "progress_http_requests",
            "HTTP requests answered, by path and status.",
            ["path", "status"],
            registry=registry,
        )
        self.state_changes = Counter(
            "progress_state_changes",
            "State changes committed by this process (each counted once, where it was made).",
            ["state"],
            registry=registry,
        )
        self.calculations = Counter(
            "progress_calculations",
            "Calculations that ended, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.calculation_seconds = Histogram(
            "progress_calculation_seconds",
            "How long the calculations that ended lasted.",
            buckets=CALCULATION_BUCKETS,
            registry=registry,
        )
        self.broadcast_seconds = Histogram(
            "progress_broadcast_seconds",
            "Time to hand one state to every client of this server.",
            buckets=BROADCAST_BUCKETS,
            registry=registry,
        )
        self.lagging = Gauge(
            "progress_lagging_clients",
            "Clients skipped for a full send buffer now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.backend_up = Gauge(
            "progress_backend_up",
            "1 while the calculation's store can be reached, 0 otherwise.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.backend_latency = Histogram(
            "progress_backend_latency_seconds",
            "Time of one transaction on the shared store (Redis).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def count_commits(self, changes: tuple[StateSnapshot, ...]) -> None:
        """Count the changes this process committed: every instance and worker hears
        every change, and only the one that made it counts it, so sums are right."""
        for snapshot in changes:
            self.state_changes.labels(snapshot.state.value).inc()
            if snapshot.state.is_final and snapshot.started_at is not None:
                self.calculations.labels(snapshot.state.value).inc()
                self.calculation_seconds.observe(snapshot.changed_at - snapshot.started_at)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        if self.multiprocess:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

"""``progress-bench``: fan-out latency, connections and memory, ours against the peers."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import psutil
from websockets.sync.client import connect

from .loadgen import Workers
from .servers import EXTRA_SERVERS, SERVERS, ReusePortWorkers, ServerUnderTest
from .storm import STABLE_AFTER, StormReport, run_storm, storm_table

__all__ = ["Result", "main"]


@dataclass
class Result:
    server: str
    clients: int
    connected: int
    connect_s: float
    connect_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    delivered_ratio: float
    cpu_s_per_broadcast: float
    rss_mib: float
    rss_kib_per_client: float
    #: Processes whose CPU and memory are summed (progress-server-redis: its two
    #: instances and redis-server).
    processes: int = 1


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run_calculations(port: int, count: int, timeout: float) -> list[int]:
    """Drive `count` calculations from a controller client; returns their states' seqs."""
    seqs: list[int] = []
    # The floor does not answer a close frame: do not wait the default 10 s for it.
    with connect(
        f"ws://127.0.0.1:{port}/progress", open_timeout=30, close_timeout=0.5, max_size=None
    ) as ws:
        for _ in range(count):
            ws.send('{"action": "start"}')
            deadline = time.monotonic() + timeout
            started = False
            while True:
                message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if message.get("type") != "state":
                    continue
                if message["state"] == "STARTING":
                    started = True
                if started:
                    seqs.append(message["seq"])
                    if message["state"] == "SUCCESS":
                        break
    return seqs


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def rss(processes: list[psutil.Process]) -> int:
    return sum(process.memory_info().rss for process in processes)


def server_processes(started: Sequence[subprocess.Popen[bytes]]) -> list[psutil.Process]:
    """The processes started, and theirs (the workers of ``--workers``): what counts."""
    found: list[psutil.Process] = []
    for process in started:
        parent = psutil.Process(process.pid)
        found += [parent, *parent.children(recursive=True)]
    return found


@dataclass(frozen=True)
class Plan:
    """How the load is spread so that no process or address runs out: one process
    holds at most its limit on open files, and one source address reaches one server
    port from at most as many ports as the ephemeral range has."""

    processes: int
    sources: tuple[str, ...]
    open_files: int
    ports_per_address: int

    def describe(self, clients: int) -> str:
        text = (
            f"{clients} clients: {self.processes} load-generating processes "
            f"(open files: {self.open_files} a process)"
        )
        if self.sources:
            text += (
                f", from {len(self.sources)} source addresses {self.sources[0]}.."
                f"{self.sources[-1]} ({self.ports_per_address} ephemeral ports each)"
            )
        return text


def ephemeral_ports() -> int:
    """How many ports one address can connect from (Linux's ip_local_port_range)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(high) - int(low) + 1
    except (OSError, ValueError):
        return 28_232  # Linux's default range, 32768-60999


def plan(clients: int, workers: int) -> Plan:
    """The processes and source addresses ``clients`` need, ``workers`` at least (as
    if every client went to one server port, the worst case).

    Raises:
        click.ClickException: If the limit on open files cannot be raised enough.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    room = max(1, limit - RESERVED_FILES)
    processes = max(workers, -(-clients // room))
    raise_open_files(-(-clients // processes) + RESERVED_FILES)
    range_size = ephemeral_ports()
    sources: tuple[str, ...] = ()
    # Past 90 % of the range from one address to one port, connect() fails.
    per_address = range_size * 9 // 10
    if clients > per_address:
        processes = max(processes, -(-clients // per_address))
        sources = tuple(f"127.0.0.{2 + index}" for index in range(processes))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return Plan(processes, sources, soft, range_size)


def measure(
    server: ServerUnderTest,
    clients: int,
    *,
    calculations: int,
    step_seconds: float,
    workers: int,
    log: Path,
    sources: Sequence[str] = (),
) -> Result:
    running = server.start(step_seconds, clients, log)
    pool: Workers | None = None
    try:
        observed = server_processes(running.processes)
        rss_before = rss(observed)
        pool = Workers(workers, "127.0.0.1", running.ports, "/progress", clients, sources=sources)
        connected, _failed, seconds = pool.connect()
        # The server settles (allocations, buffers) before its memory is read; short
        # steps mean a smoke run, where a fraction of a second is enough.
        settle = min(1.0, max(0.2, 4 * step_seconds))
        time.sleep(settle)
        rss_connected = rss(observed)
        pool.reset()
        cpu_before = cpu_seconds(observed)
        # Through the first instance when there are several: the others hear of each
        # action through the shared store, as they would in production.
        seqs = run_calculations(running.ports[0], calculations, timeout=30 + 10 * step_seconds)
        time.sleep(max(settle, 2 * step_seconds))  # let the last deliveries land
        cpu = cpu_seconds(observed) - cpu_before
        latencies, per_seq = pool.collect(seqs)
    finally:
        try:
            if pool is not None:
                pool.close()
        finally:
            running.stop()
    ordered = sorted(latencies)
    expected = clients * len(seqs)
    return Result(
        server=server.name,
        clients=clients,
        connected=connected,
        connect_s=round(seconds, 3),
        connect_per_s=round(connected / seconds, 1) if seconds > 0 else float("nan"),
        p50_ms=round(percentile(ordered, 0.50) * 1000, 2),
        p99_ms=round(percentile(ordered, 0.99) * 1000, 2),
        max_ms=round((ordered[-1] if ordered else float("nan")) * 1000, 2),
        delivered_ratio=round(sum(per_seq.values()) / expected, 4) if expected else 0.0,
        cpu_s_per_broadcast=round(cpu / len(seqs), 5) if seqs else float("nan"),
        rss_mib=round(rss_connected / 2**20, 1),
        rss_kib_per_client=round((rss_connected - rss_before) / 1024 / max(1, connected), 2),
        processes=len(observed),
    )


#: Descriptors a load-generating process keeps for itself besides its clients.
RESERVED_FILES = 1024


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = hard if hard == resource.RLIM_INFINITY else max(soft, min(hard, needed))
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        raise click.ClickException(
            f"{needed} open files are needed in each load-generating process and the "
            f"limit is {soft}: raise it (ulimit -n), or use more processes (--workers)"
        )


def ratios(result: Result, results: list[Result]) -> dict[str, float | None]:
    """How a result compares with progress-server's at the same number of clients."""
    ours = next(
        (r for r in results if r.server == "progress-server" and r.clients == result.clients),
        None,
    )

    def ratio(mine: float, theirs: float) -> float | None:
        return round(mine / theirs, 3) if ours is not None and theirs > 0 else None

    return {
        "p50_vs_ours": ratio(result.p50_ms, ours.p50_ms) if ours else None,
        "p99_vs_ours": ratio(result.p99_ms, ours.p99_ms) if ours else None,
        "cpu_vs_ours": ratio(result.cpu_s_per_broadcast, ours.cpu_s_per_broadcast)
        if ours
        else None,
        "rss_per_client_vs_ours": ratio(result.rss_kib_per_client, ours.rss_kib_per_client)
        if ours
        else None,
    }


def table(results: list[Result]) -> str:
    ours = {r.clients: r for r in results if r.server == "progress-server"}
    width = max([16, *(len(r.server) + 1 for r in results)])
    header = (
        f"{'server':<{width}}{'clients':>8}{'conn/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'deliv':>7}{'cpu ms/b':>10}{'RSS MiB':>9}{'KiB/cl':>8}{'p99 x':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        base = ours.get(r.clients)
        ratio = f"{r.p99_ms / base.p99_ms:.2f}" if base and base.p99_ms > 0 else "-"
        lines.append(
            f"{r.server:<{width}}{r.clients:>8}{r.connect_per_s:>9.0f}"
            f"{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.max_ms:>9.1f}{r.delivered_ratio:>7.3f}"
            f"{r.cpu_s_per_broadcast * 1000:>10.2f}{r.rss_mib:>9.1f}{r.rss_kib_per_client:>8.1f}"
            f"{ratio:>7}"
        )
    several = {r.server: r.processes for r in results if r.processes > 1}
    lines += [f"{name}: CPU and RSS summed over its {n} processes" for name, n in several.items()]
    return "\n".join(lines)


def _client_counts(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int]:
    if value is None:
        return []
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"must be numbers separated by commas, not {value!r}.") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("must name at least one positive number of clients.")
    return counts


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--clients",
    callback=_client_counts,
    help="Comma-separated numbers of clients.  [default: 100,1000,5000,10000; --quick: 100,1000]",
)
@click.option(
    "--calculations",
    type=click.IntRange(1, 1000),
    help="Calculations run per server and number of clients.  [default: 10; --quick: 3]",
)
@click.option(
    "--step-seconds",
    type=click.FloatRange(0.01, 10),
    help="Step of each calculation: long enough for the slowest fan-out to finish.  "
    "[default: 0.5; --quick: 0.2]",
)
@click.option(
    "--servers",
    default=",".join(SERVERS),
    show_default=True,
    help="Comma-separated servers to measure; besides the default ones: "
    + ", ".join(EXTRA_SERVERS)
    + ".",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Load-generating processes.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="A run of about a minute.")
@click.option(
    "--storm",
    is_flag=True,
    help="Measure a reconnect storm instead: the clients, with progress-client's "
    "backoff, lose progress-server to a SIGKILL and come back when it restarts.  "
    "[clients default: 10000; --quick: 1000]",
)
def main(
    clients: list[int],
    calculations: int | None,
    step_seconds: float | None,
    servers: str,
    workers: int,
    json_path: Path | None,
    quick: bool,
    storm: bool,
) -> None:
    """Measure progress-server against the servers a user could pick instead.

    Each server runs in its own processes on this machine; the same load generator opens
    the clients, the same controller runs the calculations. Reported per server and
    number of clients: connection rate, fan-out latency from a state's changed_at to
    its receipt (p50, p99, max), the share of states delivered, server CPU per
    broadcast, and server memory in all and per connection. progress-server-redis is two
    progress-server instances sharing the calculation through a private redis-server:
    the clients are split between them, the controller acts through the first, and
    CPU and memory are summed over all three processes.
    """
    if storm:
        _storm(clients or ([1000] if quick else [10000]), workers, json_path, quick=quick)
        return
    counts = clients or ([100, 1000] if quick else [100, 1000, 5000, 10000])
    runs = calculations or (3 if quick else 10)
    step_seconds = step_seconds or (0.2 if quick else 0.5)
    names = [name.strip() for name in servers.split(",") if name.strip()]
    known = {**SERVERS, **EXTRA_SERVERS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown server {unknown[0]!r}; choose from {', '.join(known)}.",
            param_hint="--servers",
        )
    log = Path(tempfile.mkdtemp(prefix="progress-bench-")) / "servers.log"
    results: list[Result] = []
    skipped: dict[str, str] = {}
    for name in names:
        server = known[name]
        reason = server.prepare()
        if reason is not None:
            skipped[name] = reason
            click.echo(f"skipping {name}: {reason}", err=True)
            continue
        for count in counts:
            click.echo(f"measuring {name} with {count} clients...", err=True)
            try:
                spread = plan(count, workers)
                if spread.processes != workers or spread.sources:
                    click.echo(f"  {spread.describe(count)}", err=True)
                if isinstance(server, ReusePortWorkers):
                    click.echo(f"  {server.count(count)} server workers", err=True)
                result = measure(
                    server,
                    count,
                    calculations=runs,
                    step_seconds=step_seconds,
                    workers=spread.processes,
                    log=log,
                    sources=spread.sources,
                )
            except Exception as exc:  # one server failing must not end the whole run
                skipped[f"{name}@{count}"] = str(exc) or type(exc).__name__
                click.echo(f"  {name} with {count} clients failed: {exc}", err=True)
                continue
            results.append(result)
    click.echo(table(results))
    for name, reason in skipped.items():
        click.echo(f"not measured: {name}: {reason}")
    click.echo(f"servers' output: {log}")
    if json_path is not None:
        payload = {
            "results": [dict(asdict(result), **ratios(result, results)) for result in results],
            "skipped": skipped,
            "settings": {
                "calculations": runs,
                "step_seconds": step_seconds,
                "workers": workers,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
        }
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
    if not results:
        sys.exit(1)


def _storm(counts: list[int], workers: int, json_path: Path | None, *, quick: bool) -> None:
    log = Path(tempfile.mkdtemp(prefix="progress-bench-")) / "servers.log"
    reports: list[StormReport] = []
    for count in counts:
        spread = plan(count, workers)
        click.echo(f"a reconnect storm of {spread.describe(count)}...", err=True)
        reports.append(
            run_storm(
                count,
                processes=spread.processes,
                sources=spread.sources,
                log=log,
                settle=0.0 if quick else STABLE_AFTER + 0.5,
            )
        )
    click.echo(storm_table(reports))
    click.echo(f"servers' output: {log}")
    if json_path is not None:
        payload = {
            "storms": [asdict(report) for report in reports],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
    if any(report.gave_up for report in reports):
        sys.exit(1)

"""progress-bench: its parsing, and a quick real run that proves it still works.

No timing is asserted: speed is what the benchmark reports, not what the tests check.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from progress_bench.cli import main, percentile
from progress_bench.loadgen import BenchClient, deal, frames, pongs_for
from progress_bench.servers import SERVERS
from tests.helpers import command


def frame(payload: bytes) -> bytes:
    if len(payload) < 126:
        return bytes([0x81, len(payload)]) + payload
    return bytes([0x81, 126]) + struct.pack("!H", len(payload)) + payload


def test_frames_are_stamped_with_the_chunk_that_completes_them() -> None:
    """A frame split over chunks gets the time of its last byte; pings are skipped."""
    small, large = b'{"a":1}', b"x" * 300
    data = b"HTTP/1.1 101 OK\r\n\r\n" + frame(small) + bytes([0x89, 0]) + frame(large)
    cut = len(data) - 100
    chunks = [(1.0, data[:cut]), (2.0, data[cut:])]
    assert frames(chunks, upgraded=False) == [(1.0, small), (2.0, large)]


def test_frames_after_a_reset_need_no_handshake() -> None:
    """Once the handshake was cut off, the first bytes are frames."""
    assert frames([(5.0, frame(b"{}"))], upgraded=True) == [(5.0, b"{}")]


def test_clients_are_dealt_to_the_ports_round_robin() -> None:
    """Every port gets its share of the clients (within one), whatever the processes."""
    assert deal(5, 2, [7000]) == [[7000, 7000, 7000], [7000, 7000]]
    assert deal(5, 2, [7000, 7001]) == [[7000, 7001, 7000], [7001, 7000]]
    for clients, processes in ((200, 2), (201, 2), (10_000, 3)):
        dealt = [port for share in deal(clients, processes, [1, 2]) for port in share]
        assert len(dealt) == clients
        assert abs(dealt.count(1) - dealt.count(2)) <= 1


def test_the_redis_pair_says_why_it_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without redis-server on the PATH, the Redis row has a reason to be skipped."""
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = SERVERS["progress-server-redis"].prepare()
    assert reason is not None and "redis-server is not installed" in reason


def test_percentiles() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert percentile(ordered, 0.5) in (50.0, 51.0)
    assert percentile(ordered, 0.99) == 99.0
    assert percentile(ordered, 1.0) == 100.0


#: The servers measured by default besides progress-server, in groups run side by side,
#: each with progress-server (which every row is compared with): the quick run lasts as
#: long as its slowest group, not as long as all the servers one after the other.
GROUPS = [
    ("floor", "progress-server-info"),
    ("progress-server-redis", "naive"),
    ("node-ws", "aiohttp"),
]


def test_the_groups_are_every_server_measured_by_default() -> None:
    """The quick runs below, together, measure what `progress-bench` measures by default."""
    (servers,) = [param for param in main.params if param.name == "servers"]
    assert servers.default == ",".join(SERVERS)
    assert sorted(["progress-server", *(peer for group in GROUPS for peer in group)]) == sorted(
        SERVERS
    )


@pytest.mark.parametrize("peers", GROUPS, ids=["-".join(group) for group in GROUPS])
def test_quick_run_with_200_clients(tmp_path: Path, peers: tuple[str, ...]) -> None:
    """`progress-bench --quick --clients 200` (one short calculation each, to keep the
    suite fast) runs progress-server and the peers it can, the Redis pair included, and
    writes JSON in which every state reached every client, each row compared with ours."""
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [
            command("progress-bench"),
            "--quick",
            "--servers",
            ",".join(["progress-server", *peers]),
            "--clients",
            "200",
            "--calculations",
            "1",
            "--step-seconds",
            "0.05",
            "--json",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "p99 ms" in result.stdout
    report = json.loads(output.read_text())
    measured = {row["server"] for row in report["results"]}
    assert "progress-server" in measured
    if "floor" in peers:
        assert "floor" in measured
    # A peer may be missing on a machine (no Node.js, no redis-server), never silently.
    for peer in {"progress-server-redis", "naive", "node-ws", "aiohttp"} & set(peers):
        assert peer in measured or any(key.startswith(peer) for key in report["skipped"])
        if peer not in measured:
            assert f"not measured: {peer}" in result.stdout
    for row in report["results"]:
        assert row["clients"] == row["connected"] == 200
        assert row["delivered_ratio"] == 1.0, row
        for key in ("connect_per_s", "p50_ms", "p99_ms", "max_ms", "cpu_s_per_broadcast"):
            assert row[key] >= 0, (key, row)
        assert row["rss_kib_per_client"] > 0
        assert row["p99_vs_ours"] is not None and row["p99_vs_ours"] > 0
    ours = next(row for row in report["results"] if row["server"] == "progress-server")
    assert ours["p99_vs_ours"] == 1.0
    assert ours["processes"] == 1
    for row in report["results"]:
        if row["server"] == "progress-server-redis":  # two instances and redis-server
            assert row["processes"] == 3
            assert "progress-server-redis: CPU and RSS summed over its 3 processes" in (
                result.stdout
            )


def test_the_load_generator_answers_pings() -> None:
    """Each ping among the frames a client received is answered by a masked pong with
    its payload (a server drops clients that never answer); other frames get nothing;
    a frame cut short is kept for the next chunk; a long frame's length is no ping."""
    state = b'\x81\x10{"type":"state"}'
    data = state + b"\x89\x04abcd" + state + b"\x89\x00"
    assert pongs_for(data) == (b"\x8a\x84\0\0\0\0abcd" + b"\x8a\x80\0\0\0\0", b"")
    assert pongs_for(state) == (b"", b"")
    assert pongs_for(state + b"\x89\x04ab") == (b"", b"\x89\x04ab")
    assert pongs_for(b"\x89\x04ab" + b"cd") == (b"\x8a\x84\0\0\0\0abcd", b"")
    long = b"\x81\x7e\x01\x89" + b"{" * 0x189  # 393 bytes: its length holds 0x89
    assert pongs_for(long + b"\x89\x01x") == (b"\x8a\x81\0\0\0\0x", b"")
    assert pongs_for(long[:100]) == (b"", long[:100])


class Written:
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


async def test_a_ping_read_with_the_handshake_response_is_answered() -> None:
    """A busy load generator may read the 101 and the first ping in one chunk: the ping
    is answered all the same (else the server drops the client 20 s later)."""
    client = BenchClient(b"GET / HTTP/1.1\r\n\r\n")
    transport = Written()
    client.transport = transport  # type: ignore[assignment]
    client.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02{}\x89\x04ping")
    assert client.connected.done() and client.connected.exception() is None
    assert transport.data == b"\x8a\x84\0\0\0\0ping"


def test_a_small_reconnect_storm(tmp_path: Path) -> None:
    """`progress-bench --storm --quick --clients 50`: the server is killed and restarted, and
    every client has a state again, none giving up; the report says so."""
    output = tmp_path / "storm.json"
    result = subprocess.run(
        [command("progress-bench"), "--storm", "--quick", "--clients", "50", "--json", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "gave up" in result.stdout and "met (12 s)" in result.stdout
    (storm,) = json.loads(output.read_text())["storms"]
    assert storm["clients"] == storm["connected"] == 50
    assert storm["gave_up"] == 0
    assert 0 < storm["restart_s"] <= storm["all_synced_s"] <= storm["goal_s"]
    assert storm["refused"] >= 1  # some came back before the new server listened

"""C load generators against a real `fmnist serve`, so the client's CPU does not count.

`h2load` (Debian's nghttp2-client) drives gRPC unary calls: its body file holds one gRPC
frame (a 0 byte, the 4-byte big-endian length, the serialized request). It sees HTTP
statuses only, so callers check one answer's grpc-status with a real client first. `wrk`
(Debian's wrk) drives REST with a Lua script. Both run bounded (a request count or a
duration) against loopback. Server CPU comes from /proc: user + system time of the
server's processes, threads included.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


@dataclass
class Load:
    """What one load run measured: completed requests, their rate and latencies."""

    requests: int
    seconds: float
    failed: int
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"{tool} not found: apt-get install {package}")
    return path


def grpc_frame(request: bytes) -> bytes:
    """One uncompressed gRPC message frame."""
    return b"\0" + len(request).to_bytes(4, "big") + request


def h2load(
    url: str,
    body: bytes,
    *,
    streams: int = 16,
    connections: int = 1,
    requests: int | None = None,
    seconds: float | None = None,
    headers: tuple[str, ...] = GRPC_HEADERS,
) -> Load:
    """POST `body` to `url` (e.g. http://127.0.0.1:8500/tensorflow.serving.PredictionService/
    Predict) with `streams` concurrent streams per connection, for `requests` requests or
    `seconds` seconds; per-request latencies from h2load's log file."""
    require("h2load", "nghttp2-client")
    with tempfile.TemporaryDirectory() as tmp:
        data, log = Path(tmp) / "body", Path(tmp) / "log"
        data.write_bytes(body)
        command = ["h2load", "-c", str(connections), "-m", str(streams), "-d", str(data)]
        command += [f"--log-file={log}"]
        for header in headers:
            command += ["-H", header]
        if seconds is not None:
            command += ["-D", f"{round(seconds * 1000)}ms"]
        else:
            command += ["-n", str(requests or 1000)]
        output = subprocess.run([*command, url], capture_output=True, text=True, check=True)
        latencies, failed = [], 0
        for line in log.read_text().splitlines():
            _, status, micros = line.split("\t")
            if status != "200":
                failed += 1
            latencies.append(int(micros) / 1000)
    finished = re.search(r"finished in ([\d.]+)(m?s)", output.stdout)
    if finished is None:
        raise RuntimeError(f"h2load printed no result:\n{output.stdout}\n{output.stderr}")
    elapsed = float(finished[1]) / (1000 if finished[2] == "ms" else 1)
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", output.stdout)[1])
    return Load(done - failed, elapsed, failed, latencies)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open("{body}", "rb")
wrk.body = file:read("*a")
file:close()
"""


def wrk(url: str, body: bytes, *, connections: int = 16, seconds: float = 5) -> Load:
    """POST `body` (JSON) to `url` over `connections` keep-alive connections (one thread)."""
    require("wrk", "wrk")
    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / "body", Path(tmp) / "post.lua"
        data.write_bytes(body)
        script.write_text(WRK_SCRIPT.format(body=data))
        command = [
            "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{max(round(seconds), 1)}s",
            "--latency",
        ]
        output = subprocess.run(
            [*command, "-s", str(script), url], capture_output=True, text=True, check=True
        ).stdout
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    total, elapsed = int(match[1]), float(match[2]) / (1000 if match[3] == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failed = int(bad[1]) if bad else 0
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", output)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p50[2]]
    return Load(total - failed, elapsed, failed, [float(p50[1]) * scale])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def server_pids(pid: int) -> list[int]:
    """A server process and its descendants (worker processes, if any)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        children = Path(f"/proc/{current}/task/{current}/children")
        if children.exists():
            todo += [int(child) for child in children.read_text().split()]
    return pids

"""REST memory per body byte, timeout accuracy and work after a timeout (issue 15).

    python benchmarks/bench_rest_limits.py --out rest_limits.json
    python benchmarks/bench_rest_limits.py --mib 60 20 --source-tree /tmp/base  # old code

Serves TF Serving's half_plus_two on loopback with `fmnist serve` and measures:
  * memory: for each --mib size, a fresh server, a warm-up request, the peak-RSS counter
    reset (/proc/PID/clear_refs), one `{"instances": [[0.5], ...]}` body of that size;
    reports the status, seconds, peak RSS above idle and that increase per body byte;
  * timeout: with --rest_api_timeout_in_ms 1000 --rest_api_num_threads 2, two 20 MiB
    bodies at once (seconds to their answers), then a tiny request (its status and
    seconds), the server's CPU seconds in the 3 s after the 504s, and how long SIGTERM
    takes to stop it.
`--source-tree` runs another checkout's code (e.g. `git archive HEAD | tar -x -C DIR`)
through this virtualenv, for before/after numbers. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path("/work/shared/fixtures/tf-serving-testdata/saved_model_half_plus_two_cpu")
READY = re.compile(r"REST on \S+:(\d+)")
# Runs `fmnist.cli` from another tree: repoint the editable install's package map first.
LAUNCH = """
import sys, runpy
import __editable___fmnist_deploy_0_1_0_finder as finder
tree = sys.argv.pop(1)
for name, path in list(finder.MAPPING.items()):
    finder.MAPPING[name] = tree + "/" + path.rsplit("/", 1)[1]
sys.argv[0] = "fmnist"
runpy.run_module("fmnist.cli", run_name="__main__")
"""


def body_of(mib: float) -> bytes:
    rows = int(mib * (1 << 20)) // 6
    return b'{"instances": [' + b"[0.5]," * (rows - 1) + b"[0.5]]}"


class Server:
    def __init__(self, model: Path, tree: Path | None, *flags: str):
        command = [sys.executable, "-m", "fmnist.cli"]
        if tree is not None:
            command = [sys.executable, "-c", LAUNCH, str(tree)]
        command += ["serve", "--port", "0", "--rest_api_port", "auto"]
        command += ["--model_name", "hp2", "--model_base_path", str(model), *flags]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        for line in self.process.stdout:
            match = READY.search(line)
            if match:
                self.url = f"http://127.0.0.1:{match.group(1)}/v1/models/hp2:predict"
                break
        else:
            raise SystemExit("fmnist serve did not start")
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()

    def status(self) -> dict[str, int]:
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return {k: int(v.split()[0]) * 1024 for k, v in re.findall(r"(Vm\w+):\s+(.*)", text)}

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(self, body: bytes, timeout: float = 600) -> tuple[int, float, str]:
        start = time.monotonic()
        try:
            response = requests.post(self.url, data=body, timeout=timeout)
        except requests.RequestException as err:
            return 0, time.monotonic() - start, type(err).__name__
        return response.status_code, time.monotonic() - start, response.text[:80]

    def stop(self) -> float:
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.monotonic() - start


def memory(model: Path, tree: Path | None, mib: float) -> dict:
    flags = ("--max_request_bytes", str(256 << 20), "--rest_api_timeout_in_ms", "600000")
    server = Server(model, tree, *flags)
    try:
        server.post(b'{"instances": [[0.5]]}')
        body = body_of(mib)
        idle = server.status()["VmRSS"]
        server.reset_peak()
        status, seconds, _ = server.post(body)
        peak = server.status()["VmHWM"] - idle
    finally:
        server.stop()
    return {
        "mib": mib,
        "body_bytes": len(body),
        "status": status,
        "seconds": round(seconds, 2),
        "peak_rss_increase_mb": round(peak / 1e6, 1),
        "bytes_per_body_byte": round(peak / len(body), 2),
    }


def timeout(model: Path, tree: Path | None) -> dict:
    server = Server(
        model,
        tree,
        "--rest_api_timeout_in_ms",
        "1000",
        "--rest_api_num_threads",
        "2",
        "--max_request_bytes",
        str(64 << 20),
    )
    body, results = body_of(20), []
    try:
        server.post(b'{"instances": [[0.5]]}')
        threads = [
            threading.Thread(target=lambda: results.append(server.post(body))) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tiny = server.post(b'{"instances": [[0.5]]}', timeout=10)
        cpu = server.cpu_seconds()
        time.sleep(3)
        cpu_after = server.cpu_seconds() - cpu
    finally:
        stop_seconds = server.stop()
    return {
        "big": [{"status": s, "seconds": round(t, 2), "body": b} for s, t, b in results],
        "tiny_status": tiny[0],
        "tiny_seconds": round(tiny[1], 2),
        "cpu_seconds_in_3s_after": round(cpu_after, 2),
        "sigterm_seconds": round(stop_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, nargs="*", default=[20, 60])
    parser.add_argument("--model", type=Path, default=FIXTURE)
    parser.add_argument("--source-tree", type=Path, help="run this checkout's code instead")
    parser.add_argument("--skip-timeout", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict = {"source_tree": str(args.source_tree or REPO), "memory": []}
    print(f"{'body MiB':>8} {'status':>6} {'seconds':>8} {'peak RSS +MB':>12} {'B/body B':>9}")
    for mib in args.mib:
        row = memory(args.model, args.source_tree, mib)
        report["memory"].append(row)
        print(
            f"{mib:>8} {row['status']:>6} {row['seconds']:>8} "
            f"{row['peak_rss_increase_mb']:>12} {row['bytes_per_body_byte']:>9}"
        )
    if not args.skip_timeout:
        report["timeout"] = result = timeout(args.model, args.source_tree)
        for i, big in enumerate(result["big"]):
            print(f"20 MiB body {i + 1}: {big['status']} after {big['seconds']} s")
        print(f"tiny request after them: {result['tiny_status']} in {result['tiny_seconds']} s")
        print(f"server CPU seconds in the 3 s after: {result['cpu_seconds_in_3s_after']}")
        print(f"SIGTERM to exit: {result['sigterm_seconds']} s")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

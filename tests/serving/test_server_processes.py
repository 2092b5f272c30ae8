"""`--server_processes 2`: two processes share the gRPC and REST ports, connections reach both,
metrics add up across them, SIGTERM stops them all, and a config reload over gRPC (which
would reach one of them) is refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import requests

from fmnist.serving.client import GrpcClient
from fmnist.serving.wire import messages as pb

MONITORING = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'


def _workers(pid: int) -> list[int]:
    """The server processes `pid` started (not multiprocessing's resource tracker)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"resource_tracker" not in _cmdline(c)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.fixture
def server(model_server, serving_fixtures: Path, tmp_path: Path):
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(MONITORING)
    return model_server(
        *("--server_processes", "2", "--monitoring_config_file", str(monitoring)),
        *("--model_name", "hp"),
        *("--model_base_path", str(serving_fixtures / "saved_model_half_plus_two_cpu")),
    )


def _predict_over_new_connections(server, connections: int, calls: int) -> None:
    x = np.float32([[1.0], [2.0]])
    for _ in range(connections):
        # a channel of its own, so each is a new TCP connection the kernel assigns anew
        client = GrpcClient(server.grpc_target, "hp")
        try:
            for _ in range(calls):
                outputs, _ = client.predict_raw({"x": x})
                assert outputs["y"].ravel().tolist() == [2.5, 3.0]
        finally:
            client.close()


def test_connections_reach_both_processes_and_metrics_add_up(server) -> None:
    workers = _workers(server.process.pid)
    assert len(workers) == 2
    before = [_cpu_ticks(pid) for pid in workers]
    _predict_over_new_connections(server, connections=16, calls=20)
    for _ in range(10):
        requests.post(f"{server.rest_url}/v1/models/hp:predict", json={"instances": [1.0]})
    assert all(_cpu_ticks(pid) > tick for pid, tick in zip(workers, before, strict=True))
    page = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
    counts = {
        api: sum(
            float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith("fmnist_serving_requests_total{")
            and f'api="{api}"' in line
            and 'method="predict"' in line
        )
        for api in ("grpc", "rest")
    }
    assert counts == {"grpc": 320.0, "rest": 10.0}


def test_sigterm_stops_every_process(server) -> None:
    workers = _workers(server.process.pid)
    assert server.stop() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_grpc_config_reload_is_refused(server) -> None:
    request = pb.ReloadConfigRequest()
    request.config.model_config_list.config.add(name="hp", base_path="/nowhere")
    with grpc.insecure_channel(server.grpc_target) as channel:
        reload = channel.unary_unary(
            f"/{pb.MODEL_SERVICE}/HandleReloadConfigRequest",
            request_serializer=pb.ReloadConfigRequest.SerializeToString,
            response_deserializer=pb.ReloadConfigResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            reload(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--server_processes" in caught.value.details()

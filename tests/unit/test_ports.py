"""The early port check of `fmnist serve` (loopback sockets only: no TensorFlow, no processes)."""

from __future__ import annotations

import socket

import pytest

from fmnist.errors import UserError
from fmnist.serving.server.transport.ports import check_free, explain_bind_failure


def test_a_listening_port_is_reported_with_the_flag_that_sets_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError) as caught:
            check_free("127.0.0.1", port, api="REST", flag="--rest_api_port")
    assert str(caught.value) == (
        f"cannot listen for REST on 127.0.0.1:{port}: port {port} is already in use "
        "(choose another with --rest_api_port)"
    )


def test_a_free_port_passes_and_stays_free():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_free("127.0.0.1", port, api="gRPC", flag="--port")
    with socket.socket() as again:  # the check let go of it
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_port_zero_is_never_checked():
    check_free("127.0.0.1", 0, api="gRPC", flag="--port")


def test_a_failed_bind_is_explained_by_probing_again():
    """gRPC's own bind error says only "Failed to bind": the probe finds the reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = explain_bind_failure("127.0.0.1", port, api="gRPC", flag="--port")
    assert message.endswith(f"port {port} is already in use (choose another with --port)")


@pytest.mark.parametrize("port", [0, 8500])
def test_a_host_that_does_not_resolve_is_named_as_the_problem(port):
    """Even with port 0, which is never taken: the host is what cannot be listened on."""
    with pytest.raises(UserError) as caught:
        check_free("999.1.1.1", port, api="gRPC", flag="--port")
    message = str(caught.value)
    assert message.startswith("cannot listen for gRPC on 999.1.1.1: --host 999.1.1.1 is not an")
    assert "--port" not in message


def test_a_host_that_is_not_this_machines_is_named_as_the_problem():
    with pytest.raises(UserError) as caught:
        check_free("192.0.2.1", 0, api="REST", flag="--rest_api_port")  # TEST-NET-1
    assert str(caught.value) == (
        "cannot listen for REST on 192.0.2.1:0: --host 192.0.2.1 is not an address of this machine"
    )

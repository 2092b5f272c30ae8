"""Can the server listen on host:port? Probed (resolve, bind, listen, let go) before models
load, so a bad address fails at once; the real bind comes once they are loaded, as in TF
Serving (an open port would look ready to TCP health checks).
"""

from __future__ import annotations

import errno
import socket

from fmnist.errors import UserError


def address(host: str, port: int | None) -> str:
    """host:port, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_ports(host: str, grpc_port: int | None, rest_port: int | None) -> None:
    """`check_free` for the gRPC port and the REST port (None: not served)."""
    if grpc_port is not None:
        check_free(host, grpc_port, api="gRPC", flag="--port")
    if rest_port is not None:
        check_free(host, rest_port, api="REST", flag="--rest_api_port")


def check_free(host: str, port: int, *, api: str, flag: str) -> None:
    """UserError naming what is wrong (the host, or the port and its flag) if host:port
    cannot be listened on (SO_REUSEADDR, as gRPC and Tornado set it)."""
    try:
        addresses = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise UserError(
            f"cannot listen for {api} on {host}: --host {host} is not an address or a host "
            f"name that resolves ({err.strerror})"
        ) from None
    for family, kind, proto, _, where in dict.fromkeys(addresses):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
                probe.listen(1)
            except OSError as err:
                raise UserError(why_not(host, port, err, api=api, flag=flag)) from None


def why_not(host: str, port: int, err: OSError, *, api: str, flag: str) -> str:
    """One line: why `api` cannot listen on host:port."""
    if err.errno == errno.EADDRINUSE:
        reason = f"port {port} is already in use (choose another with {flag})"
    elif err.errno == errno.EADDRNOTAVAIL:
        reason = f"--host {host} is not an address of this machine"
    else:
        reason = err.strerror or str(err)
    return f"cannot listen for {api} on {address(host, port)}: {reason}"


def explain_bind_failure(host: str, port: int, *, api: str, flag: str) -> str:
    """The operating system's reason for a bind that failed without one (gRPC's)."""
    try:
        check_free(host, port, api=api, flag=flag)
    except UserError as err:
        return str(err)
    return f"cannot listen for {api} on {address(host, port)} (set another port with {flag})"

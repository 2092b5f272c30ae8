"""Can the server listen on host:port? Checked before models load, so a bad address fails at once.

TF Serving binds only once its models are loaded (an open port would look ready to TCP
health checks), and so does this server: the check is a probe (resolve, bind and listen
as the servers will, then let go); the real bind reports a port taken since the same way.
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
    """UserError, naming what is wrong (the host and --host, or the port and the flag that
    sets it), if host:port cannot be listened on; port 0 (any free port) only needs a host
    that is an address of this machine. SO_REUSEADDR is set as gRPC and Tornado set it, so
    a port an earlier server left in TIME_WAIT counts as free."""
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
    """After a bind that failed without saying why (gRPC's "Failed to bind"): probe again
    for the operating system's reason."""
    try:
        check_free(host, port, api=api, flag=flag)
    except UserError as err:
        return str(err)
    return f"cannot listen for {api} on {address(host, port)} (set another port with {flag})"

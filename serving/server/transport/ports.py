"""Is a port free to listen on? Checked before models load, so a taken port fails at once.

TF Serving loads its models and only then binds, and this server does the same (a port
that accepts connections before the models are loaded would look ready to TCP health
checks). So the check is a probe: bind and listen the way the servers will, then let go;
the real bind after loading reports a port taken in between the same way.
"""

from __future__ import annotations

import errno
import socket

from fmnist.errors import UserError


def check_free(host: str, port: int, *, api: str, flag: str) -> None:
    """UserError, naming the port and the flag that sets it, if host:port cannot be listened
    on; port 0 (any free port) always can. SO_REUSEADDR is set as gRPC and Tornado set it,
    so a port an earlier server left in TIME_WAIT counts as free."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise UserError(f"cannot listen for {api} on {host}:{port}: {err.strerror}") from None
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                probe.listen(1)
            except OSError as err:
                raise UserError(why_not(host, port, err, api=api, flag=flag)) from None


def why_not(host: str, port: int, err: OSError, *, api: str, flag: str) -> str:
    """One line: why `api` cannot listen on host:port."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if err.errno == errno.EADDRINUSE:
        reason = f"port {port} is already in use (choose another with {flag})"
    else:
        reason = err.strerror or str(err)
    return f"cannot listen for {api} on {where}: {reason}"


def explain_bind_failure(host: str, port: int, *, api: str, flag: str) -> str:
    """After a bind that failed without saying why (gRPC's "Failed to bind"): probe again
    for the operating system's reason."""
    try:
        check_free(host, port, api=api, flag=flag)
    except UserError as err:
        return str(err)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"cannot listen for {api} on {where} (set another port with {flag})"

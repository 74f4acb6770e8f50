"""Listening TCP sockets for the HTTP services (gateway, orchestrator API) from a ``HOST:PORT`` option."""

from __future__ import annotations

import socket

from edgesplit.errors import ConfigError


def listen_socket(listen: str, option: str, example: str) -> socket.socket:
    """A listening TCP socket for ``HOST:PORT`` (port 0: any free port); errors name ``option``."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{option} {listen!r}: write HOST:PORT, e.g. {example}")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{option} {listen}: cannot listen: {exc.strerror}") from None
    sock.listen(128)
    return sock


def socket_url(sock: socket.socket, scheme: str = "http") -> str:
    """``scheme://host:port`` of a bound socket (a wildcard address is reported as loopback)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

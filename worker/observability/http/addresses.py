"""Where the HTTP server listens: `host:port` parsed, and what counts as loopback."""

from __future__ import annotations

import ipaddress

from worker.errors import ConfigError

DEFAULT_ADDRESS = "127.0.0.1:9400"


def is_loopback(host: str) -> bool:
    """True for a loopback address or `localhost` (a name may resolve to anything)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port)."""
    host, sep, port_s = address.rpartition(":")
    if not sep or not host or not port_s.isdigit() or int(port_s) > 65535:
        raise ConfigError(f"invalid HTTP address {address!r}: give it as host:port, "
                          f"e.g. {DEFAULT_ADDRESS} or 0.0.0.0:9400 in a container")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_s)

"""The client's IP address: the socket peer, or what trusted proxies say it is."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> list[Network]:
    """Parse TRUSTED_PROXIES entries (addresses or CIDR ranges); ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {value!r} is not an IP address or range") from exc
    return networks


def client_ip(request: Request, trusted: Sequence[Network]) -> str:
    """Return the address to limit: the peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read right to left and the first address that
    is not itself a trusted proxy is the client: entries to its left were written by the
    client and prove nothing. From an untrusted peer the header is ignored entirely.
    """
    peer = request.client.host if request.client else ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
    ]
    for hop in reversed(hops):
        if not hop:
            continue
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else peer
    return peer  # every hop is a proxy of ours: the request started inside


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True

"""The client's IP address: the socket peer, or what trusted proxies say it is."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_networks(values: Sequence[str]) -> list[Network]:
    """Parse TRUSTED_PROXIES entries (addresses or CIDR ranges); ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {value!r} is not an IP address or range") from exc
        networks.append(_unmapped(network))
    return networks


def _unmapped(network: Network) -> Network:
    """Turn an IPv4-mapped range (::ffff:10.0.0.0/104, as a dual-stack log shows it) to IPv4:
    peers are compared as plain IPv4 addresses."""
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= _MAPPED.prefixlen
        and network.subnet_of(_MAPPED)
    ):
        first = network.network_address.ipv4_mapped
        assert first is not None  # inside ::ffff:0:0/96
        return ipaddress.IPv4Network((first, network.prefixlen - _MAPPED.prefixlen))
    return network


@dataclass(frozen=True, slots=True)
class ClientAddresses:
    """How a request's client is found (trusted proxies) and keyed (IPv6 by prefix)."""

    trusted: Sequence[Network] = ()
    # One IPv6 host is usually given a whole /64: keyed by full address, a guest could take
    # a fresh bucket for every request.
    ipv6_prefix: int = 64

    def key(self, request: Request) -> str:
        """Return what the client's per-address limits count against."""
        return limit_key(_client(request, self.trusted), self.ipv6_prefix)


def client_ip(request: Request, trusted: Sequence[Network]) -> str:
    """Return the client's address: the peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read right to left and the first address that
    is not itself a trusted proxy is the client: entries to its left were written by the
    client and prove nothing. From an untrusted peer the header is ignored entirely.
    """
    return str(_client(request, trusted))


def _client(request: Request, trusted: Sequence[Network]) -> Address | str:
    """Return the client's address as client_ip() finds it, parsed (a peer that is no IP as
    it is: a test client, a Unix socket)."""
    raw_peer = request.client.host if request.client else ""
    peer = parse_address(raw_peer)
    if peer is None:
        return raw_peer
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
        address = parse_address(hop)
        if address is None:
            # Our proxy wrote something that is no address ("unknown", an obfuscated name):
            # the client cannot be told apart, so it counts against the proxy.
            return peer
        if not _is_trusted(address, trusted):
            return address
    return peer  # every hop is a proxy of ours: the request started inside


def parse_address(text: str) -> Address | None:
    """Parse an address as proxies write it: with a port, in brackets, or IPv4-mapped IPv6."""
    text = text.strip()
    if text.startswith("["):  # "[2001:db8::1]:443" or "[2001:db8::1]"
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # "203.0.113.7:5123"; a bare IPv6 address has several colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


def limit_key(address: Address | str, ipv6_prefix: int) -> str:
    """Return the key an address is limited by: itself for IPv4, its prefix for IPv6."""
    parsed = parse_address(address) if isinstance(address, str) else address
    if isinstance(parsed, ipaddress.IPv6Address) and ipv6_prefix < 128:
        return str(ipaddress.IPv6Network((parsed, ipv6_prefix), strict=False))
    return str(address if parsed is None else parsed)


def _is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)

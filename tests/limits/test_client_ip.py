"""Which address a request is limited by: the peer, or a trusted proxy's X-Forwarded-For."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from zyron.limits.client_ip import ClientAddresses, client_ip, limit_key, parse_networks


def _request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 50000), "headers": headers})


PROXIES = parse_networks(["10.0.0.0/8", "192.0.2.1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # No trusted proxies configured: the header is never read.
        ("198.51.100.9", ("203.0.113.7",), "198.51.100.9"),
        # An untrusted peer's header is a lie it told: ignored.
        ("198.51.100.9", ("10.0.0.3, 203.0.113.7",), "198.51.100.9"),
        # Through one trusted proxy: the address it saw.
        ("10.0.0.3", ("203.0.113.7",), "203.0.113.7"),
        # Through two: read right to left, skipping our own proxies.
        ("10.0.0.3", ("203.0.113.7, 10.1.2.3",), "203.0.113.7"),
        # The client's own entries (left) prove nothing: the first untrusted from the right.
        ("10.0.0.3", ("1.1.1.1, 203.0.113.7",), "203.0.113.7"),
        # Several headers count as one list, in order.
        ("192.0.2.1", ("1.1.1.1", "203.0.113.8, 10.0.0.9"), "203.0.113.8"),
        # Garbage where the client should be: the proxy itself is the key.
        ("10.0.0.3", ("not-an-ip",), "10.0.0.3"),
        # No header, or only our proxies: the peer.
        ("10.0.0.3", (), "10.0.0.3"),
        ("10.0.0.3", ("10.0.0.4, 10.0.0.5",), "10.0.0.3"),
        # IPv6.
        ("10.0.0.3", ("2001:db8::1",), "2001:db8::1"),
        # Proxies that write ports (some cloud load balancers), or brackets round IPv6.
        ("10.0.0.3", ("203.0.113.7:5123",), "203.0.113.7"),
        ("10.0.0.3", ("[2001:db8::1]:443",), "2001:db8::1"),
        ("10.0.0.3", ("[2001:db8::2]",), "2001:db8::2"),
        ("10.0.0.3", ("203.0.113.7:5123, 10.0.0.4:80",), "203.0.113.7"),
        # A dual-stack socket (HOST=::) sees an IPv4 proxy as IPv4-mapped IPv6: still trusted.
        ("::ffff:10.0.0.3", ("203.0.113.7",), "203.0.113.7"),
        ("::ffff:10.0.0.3", ("::ffff:203.0.113.9",), "203.0.113.9"),
    ],
)
def test_client_ip(peer: str, forwarded: tuple[str, ...], expected: str) -> None:
    """The client address as the issue defines it."""
    trusted = [] if peer == "198.51.100.9" and forwarded == ("203.0.113.7",) else PROXIES
    assert client_ip(_request(peer, *forwarded), trusted) == expected


def test_an_untrusted_ipv4_mapped_peer_is_its_ipv4_address() -> None:
    """One client is one key, whichever socket family it arrived on."""
    assert client_ip(_request("::ffff:198.51.100.9", "203.0.113.7"), PROXIES) == "198.51.100.9"


@pytest.mark.parametrize(
    ("address", "prefix", "expected"),
    [
        ("203.0.113.7", 64, "203.0.113.7"),
        # Every address of one /64 is one client: a guest cannot rotate through them.
        ("2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", 64, "2001:db8:1:3::/64"),
        ("2001:db8:1:2:aaaa::1", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:aaaa::1", 128, "2001:db8:1:2:aaaa::1"),
        ("testclient", 64, "testclient"),
    ],
)
def test_limit_key(address: str, prefix: int, expected: str) -> None:
    """IPv4 addresses are keyed whole, IPv6 by the configured prefix."""
    assert limit_key(address, prefix) == expected


def test_client_key_combines_both() -> None:
    """Two IPv6 clients of one /64 behind a trusted proxy share a key; another /64 does not."""
    clients = ClientAddresses(PROXIES, 64)
    first = clients.key(_request("10.0.0.3", "2001:db8::1"))
    assert first == clients.key(_request("10.0.0.3", "2001:db8::ffff")) == "2001:db8::/64"
    assert clients.key(_request("10.0.0.3", "2001:db8:0:1::1")) != first


def test_ipv4_mapped_proxy_entries_match_ipv4_peers() -> None:
    """TRUSTED_PROXIES copied from a dual-stack log (::ffff:…) still trusts those proxies."""
    trusted = parse_networks(["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"])
    assert [str(network) for network in trusted] == ["10.0.0.0/8", "192.0.2.1/32"]
    assert client_ip(_request("10.1.2.3", "203.0.113.7"), trusted) == "203.0.113.7"
    assert client_ip(_request("::ffff:192.0.2.1", "203.0.113.8"), trusted) == "203.0.113.8"
    assert parse_networks(["2001:db8::/32"])[0].version == 6  # other IPv6 ranges stay


def test_bad_proxy_entry_is_named() -> None:
    """A TRUSTED_PROXIES entry that is not an address says which."""
    with pytest.raises(ValueError, match=r"'proxy\.example'"):
        parse_networks(["10.0.0.0/8", "proxy.example"])

"""Which kind of network an IP address is in: what peer URLs and client limits are judged by."""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLIENT_NETWORKS = ("loopback", "private", "public", "link-local")
"""The names `PYBTC_CLIENT_EXEMPT` may list."""
PEER_NETWORKS = (*CLIENT_NETWORKS, "metadata")
"""The names `PYBTC_PEER_NETWORKS` may list."""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6 (inside the private fc00::/7 range)
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
"""Cloud instance-metadata services: a peer URL pointing here would read the host's secrets."""


def address_class(ip: Address) -> str:
    """loopback, link-local, metadata, private or public ('reserved' for the rest)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if ip.is_global:
        return "public"
    return "reserved"


def parse_networks(text: str, what: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR ranges; ValueError naming `what` otherwise."""
    try:
        return tuple(ipaddress.ip_network(n.strip()) for n in text.split(",") if n.strip())
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None

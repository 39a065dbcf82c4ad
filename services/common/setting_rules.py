"""What each setting may be: one rule per `Settings` field, each naming what is allowed.

`Settings.validate()` checks every field against `RULES`; a refusal names the variable, its
value and the rule's `allowed` text, which docs/operations.md repeats in its settings table.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pybtc import NETWORKS, AddressError, decode_address
from services.common.addresses import CLIENT_NETWORKS, PEER_NETWORKS, parse_networks


@dataclass(frozen=True)
class Rule:
    """What one setting may be: `allowed` is what a refusal names, `ok` checks a value."""

    allowed: str
    ok: Callable[[Any], bool]


def one_of(*names: str, any_case: bool = False) -> Rule:
    allowed = "one of " + ", ".join(names) + (" (any case)" if any_case else "")
    folded = {n.casefold() for n in names}
    return Rule(allowed, lambda v: v.casefold() in folded if any_case else v in names)


def shown(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) else f"{x:g}"


def number(low: float, high: float, *, whole: bool = True, note: str = "") -> Rule:
    kind = "a whole number" if whole else "a number"
    allowed = f"{kind} from {shown(low)} to {shown(high)}" + (f" ({note})" if note else "")
    return Rule(allowed, lambda v: low <= v <= high)


def seconds(note: str = "", *, zero: bool = False) -> Rule:
    """A duration in seconds: above 0 (or 0 too, when `zero`, which `note` explains)."""
    low = "from 0" if zero else "above 0"
    allowed = f"a number of seconds {low}, below {shown(MAX_SECONDS)}" + (
        f" ({note})" if note else ""
    )
    return Rule(allowed, lambda v: (v >= 0 if zero else v > 0) and v < MAX_SECONDS)


LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
"""One label of a host name (`_` too: container names have it)."""
HOST_NAME = re.compile(rf"(?=.{{1,253}}$){LABEL}(\.{LABEL})*\.?")


def is_host(text: str) -> bool:
    """An IP address or something shaped like a host name (`node1`, `pybtc.example.org`)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return HOST_NAME.fullmatch(text) is not None
    return True


def is_url(text: str, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        return False
    if parts.scheme == "unix":
        return bool(parts.path) and "unix" in schemes
    return parts.scheme in schemes and is_host(parts.hostname or "")


def names_in(text: str, known: tuple[str, ...]) -> bool:
    return all(n.strip() in known for n in text.split(",") if n.strip())


def parses(parser: Callable[[str], object], text: str) -> bool:
    try:
        parser(text)
    except (ValueError, AddressError):
        return False
    return True


def allowed_hosts_ok(text: str) -> bool:
    from services.common.origins import parse_allowed_hosts  # origins builds on Settings

    return parses(parse_allowed_hosts, text)


MAX_SECONDS = 1e6
FAUCET_ON = frozenset({"on", "yes", "true", "1"})
HTTP_URL = Rule("an http:// or https:// URL with a host", is_url)
PORT = number(1, 65535, note="after PYBTC_PORT_OFFSET is added")
LIMIT = number(0, 1e9, note="0: no limit")
BURST = number(1, 1e9)
RATE = number(0, 1e6, whole=False, note="0: no limit")
RULES: dict[str, Rule] = {
    "network": one_of(*NETWORKS),
    "host": Rule("an IP address or a host name", is_host),
    "ledger_port": PORT,
    "miner_port": PORT,
    "explorer_port": PORT,
    "wallet_port": PORT,
    "port_offset": number(0, 65534),
    "redis_url": Rule(
        "a redis://, rediss:// or unix:// URL",
        lambda v: is_url(v, ("redis", "rediss", "unix")),
    ),
    "miner_url": HTTP_URL,
    "public_url": HTTP_URL,
    "ledger_url": HTTP_URL,
    "explorer_public_url": HTTP_URL,
    "lang": one_of("en", "ko"),
    "log_level": one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", any_case=True),
    "max_body_bytes": number(1024, 1 << 30),
    "client_rate": LIMIT,
    "client_burst": BURST,
    "client_connections": LIMIT,
    "client_exempt": Rule(
        "comma-separated names from " + ", ".join(CLIENT_NETWORKS),
        lambda v: names_in(v, CLIENT_NETWORKS),
    ),
    "trusted_proxies": Rule(
        "comma-separated addresses or CIDR ranges (10.0.0.0/8)",
        lambda v: parses(lambda t: parse_networks(t, "PYBTC_TRUSTED_PROXIES"), v),
    ),
    "allowed_hosts": Rule(
        "comma-separated host names or addresses, without scheme, port or path",
        allowed_hosts_ok,
    ),
    "bad_blocks_per_minute": LIMIT,
    "bad_block_burst": BURST,
    "mempool_max_count": BURST,
    "min_fee": number(0, 1e18),
    "rejection_log_size": number(0, 1e7),
    "peers": Rule(
        "comma-separated http:// or https:// URLs with a host",
        lambda v: all(is_url(u.strip()) for u in v.split(",") if u.strip()),
    ),
    "peer_networks": Rule(
        "comma-separated names from " + ", ".join(PEER_NETWORKS),
        lambda v: names_in(v, PEER_NETWORKS),
    ),
    "max_peers": BURST,
    "peer_timeout": seconds(),
    "peer_max_failures": BURST,
    "peer_register_rate": RATE,
    "peer_register_burst": BURST,
    "miner_mode": one_of("auto", "on-demand"),
    "miner_workers": number(0, 1024, note="0: one per core"),
    "miner_address": Rule(
        "a pyBTC address (pybtc check-address)", lambda v: parses(decode_address, v)
    ),
    "mine_timeout": seconds(),
    "sync_interval": seconds(),
    "announce_rate": RATE,
    "announce_burst": BURST,
    "faucet": one_of("on", "off", "yes", "no", "true", "false", "1", "0", any_case=True),
    "faucet_amount": BURST,
    "faucet_interval": seconds("0: no wait", zero=True),
    "auto_mine": seconds("0: only when asked", zero=True),
}
"""What each setting may be; a setting without a rule (a path, a token, an id) may be anything."""

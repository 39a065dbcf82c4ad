"""Settings: every knob of a node, read once from `PYBTC_*` environment variables.

`Settings.from_env()` is called by each service's `__main__` and by `pybtc up`; nothing reads
the environment at import time. Tests build `Settings(...)` directly. Every value is checked
against `RULES` (by `from_env`, and by `Settings.validate()` for settings built in code); a
refusal is a `SettingsError` naming the variable, its value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pybtc import COIN, ChainParams, get_params
from services.common.setting_rules import FAUCET_ON, RULES

PREFIX = "PYBTC_"
CLIENT_ONLY = frozenset({"PYBTC_WALLET_FILE", "PYBTC_WALLET_PASSPHRASE", "PYBTC_WALLET_URL"})
"""Read by the CLI wallet, not by a node: neither settings nor typos."""


class SettingsError(ValueError):
    """An environment variable has a value the node cannot use."""


@dataclass(frozen=True)
class Settings:
    """A node's configuration. Each field is `PYBTC_<FIELD NAME IN CAPITALS>` in the environment."""

    network: str = "devnet"
    """Which chain: devnet or regtest."""
    data_dir: Path = Path("data")
    """Where the node keeps its SQLite database, keys and embedded Redis files."""
    host: str = "127.0.0.1"
    """The address the services listen on."""
    ledger_port: int = 5000
    miner_port: int = 5100
    explorer_port: int = 8080
    wallet_port: int = 8081
    port_offset: int = 0
    """Added to all four ports above (what `pybtc up --port-offset N` sets): one number moves a
    whole node, and the CLI wallet, `pybtc mine` and `pybtc faucet` find it with the same one."""
    redis_url: str = ""
    """The bus; empty means `pybtc up` starts an embedded redis-server (with a password kept
    in the data dir). A URL given here is used as is: it carries its own password."""
    miner_url: str = ""
    """How the ledger reaches its own miner for GET /mine (default http://host:miner_port)."""
    public_url: str = ""
    """How other nodes reach this ledger (default http://host:ledger_port)."""
    ledger_url: str = ""
    """How the other services of this node reach its ledger (default: the public URL)."""
    node_id: str = ""
    """This node's origin id on the bus (default: derived from the public URL)."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)."""
    max_body_bytes: int = 1_048_576
    """Largest request body the ledger accepts (413 above; the other services take less)."""
    client_rate: int = 20
    """Requests a second one client may make on average (0: no limit); 429 past it."""
    client_burst: int = 100
    """Requests one client may make at once before `client_rate` applies."""
    client_connections: int = 16
    """Connections one client may have open with requests on them (0: no limit); 429 past it."""
    client_exempt: str = "loopback"
    """Clients in these networks are not limited: any of loopback, private, public, link-local."""
    trusted_proxies: str = ""
    """Comma-separated addresses/CIDR ranges of reverse proxies whose X-Forwarded-For names the
    client (for the limits and the faucet); empty: the connection's address is the client."""
    allowed_hosts: str = ""
    """Comma-separated host names (or addresses) the services answer to besides their listen
    address, localhost, 127.0.0.1, [::1] and the hosts of the node's URLs; any other Host
    header is refused (a DNS-rebinding page)."""
    bad_blocks_per_minute: int = 30
    """Refused blocks one client may POST to /mining/submit a minute on average, each counting
    1 plus 1 per 100 kB (0: no limit); past it, 429 `too-many-bad-blocks`. Loopback too."""
    bad_block_burst: int = 20
    """Refused blocks (counted as for `bad_blocks_per_minute`) one client may send at once."""
    operator_token: str = ""
    """When set, GET /mine, POST /nodes/register and the faucet need
    `Authorization: Bearer <token>` (a public node sets one)."""
    mempool_max_count: int = 5_000
    """Most transactions the mempool holds; the cheapest is evicted when a better one comes."""
    min_fee: int = 1_000
    """Smallest fee (base units) the mempool admits: the relay policy, not a consensus rule."""
    rejection_log_size: int = 1_000
    """How many recent rejections the ledger remembers for /rejections."""
    peers: str = ""
    """Comma-separated peer URLs to register with at start."""
    peer_networks: str = ""
    """Address ranges peers may be in: any of loopback, private, public, link-local, metadata.
    Empty: loopback,private,public for a node listening on loopback only, private,public for
    one listening on other addresses (a node strangers can reach must not be steered at its
    own machine)."""
    max_peers: int = 64
    peer_timeout: float = 5.0
    """Seconds one request to a peer may take in total."""
    peer_max_failures: int = 5
    """Failed contacts in a row after which a peer is dropped."""
    peer_register_rate: float = 0.1
    """New peer URLs a second one client may have this node handshake via POST /nodes/register,
    on average (loopback included; 0: no limit); past it 429 `register-rate-limited`."""
    peer_register_burst: int = 32
    """New peer URLs one client may register at once before the rate applies."""
    miner_mode: str = ""
    """auto (mine continuously) or on-demand (only for GET /mine); default: auto on devnet,
    on-demand on regtest."""
    miner_workers: int = 0
    """Hashing processes; 0 means one per core."""
    miner_address: str = ""
    """Where mined coins go; empty: a key kept in the data dir (the same across restarts)."""
    mine_timeout: float = 120.0
    """Seconds GET /mine waits for its block."""
    sync_interval: float = 30.0
    """Seconds between health checks and catch-up syncs with every peer."""
    announce_rate: float = 1.0
    """New-block announcements (`/nodes/resolve` with `miner_node`) naming a node that is not a
    peer that one client may send a second on average (0: no limit); 429 past it."""
    announce_burst: int = 20
    """Such announcements one client may send at once before `announce_rate` applies."""
    faucet: str = "on"
    """on or off (yes/no, true/false, 1/0 too): the wallet's faucet pays test coins from the
    node's key (devnet, regtest)."""
    faucet_amount: int = 10 * COIN
    """Base units one faucet payment sends."""
    faucet_interval: float = 60.0
    """Seconds before the same address, or the same client, can be paid by the faucet again."""
    explorer_public_url: str = ""
    """Where browsers reach this node's explorer, for links (default http://host:explorer_port)."""
    lang: str = "en"
    """The explorer's language when the browser names none it speaks and no `pybtc_lang` cookie
    was chosen: en or ko."""
    auto_mine: float = 0.0
    """Seconds between blocks the miner mines by itself in on-demand mode (`pybtc up
    --auto-mine SECONDS`, as regtest boxes do); 0: only when asked."""
    instance_id: str = ""
    """Set by `pybtc up` for each run and shown by every service's /healthz, so that `pybtc up`
    recognises its own services and never takes whatever answers on a port for one of them."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Unrecognised PYBTC_* variables, kept so a typo can be reported."""

    @property
    def params(self) -> ChainParams:
        return get_params(self.network)

    @property
    def ledger_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.ledger_port}"

    @property
    def ledger_internal_url(self) -> str:
        return self.ledger_url or self.ledger_public_url

    @property
    def miner_internal_url(self) -> str:
        return self.miner_url or f"http://{self.host}:{self.miner_port}"

    @property
    def origin(self) -> str:
        return self.node_id or self.ledger_public_url.split("://", 1)[-1]

    @property
    def local_host(self) -> str:
        """The host a client on this machine uses to reach the services (a node listening on
        every address is reached on loopback)."""
        return {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)  # noqa: S104

    @property
    def ledger_client_url(self) -> str:
        """Where a command on this machine (the CLI wallet, `pybtc mine`) reaches the ledger:
        PYBTC_LEDGER_URL, else PYBTC_PUBLIC_URL, else the local host and ledger port."""
        return self.ledger_url or self.public_url or f"http://{self.local_host}:{self.ledger_port}"

    @property
    def miner_client_url(self) -> str:
        return self.miner_url or f"http://{self.local_host}:{self.miner_port}"

    @property
    def wallet_client_url(self) -> str:
        return f"http://{self.local_host}:{self.wallet_port}"

    @property
    def browser_wallet_url(self) -> str:
        """Where a person opens this node's browser wallet, as far as the settings tell: the
        local URL when no public explorer URL is set (the tutorial's reader, on the node's
        machine); the explorer's public host at the wallet port when that URL names the
        explorer's own port (published as is); else "" (behind a proxy they do not say)."""
        if not self.explorer_public_url:
            return self.wallet_client_url
        public = urlsplit(self.explorer_public_url)
        if public.hostname and public.port == self.explorer_port:
            host = f"[{public.hostname}]" if ":" in public.hostname else public.hostname
            return f"{public.scheme}://{host}:{self.wallet_port}"
        return ""

    def shifted(self, offset: int) -> Settings:
        """These settings with every port moved by `offset` (what --port-offset does)."""
        if not offset:
            return self
        return replace(
            self,
            ledger_port=self.ledger_port + offset,
            miner_port=self.miner_port + offset,
            explorer_port=self.explorer_port + offset,
            wallet_port=self.wallet_port + offset,
            port_offset=self.port_offset + offset,
        )

    @property
    def explorer_url(self) -> str:
        return self.explorer_public_url or f"http://{self.host}:{self.explorer_port}"

    @property
    def peer_network_names(self) -> str:
        """`peer_networks`, or its default for where this node listens."""
        if self.peer_networks:
            return self.peer_networks
        return "loopback,private,public" if is_loopback_host(self.host) else "private,public"

    @property
    def faucet_on(self) -> bool:
        """`faucet` read as a switch (`validate` refuses anything that is neither on nor off)."""
        return self.faucet.lower() in FAUCET_ON

    @property
    def mining_mode(self) -> str:
        return self.miner_mode or ("auto" if self.network == "devnet" else "on-demand")

    @property
    def db_path(self) -> Path:
        return self.data_dir / f"ledger-{self.network}.sqlite3"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build from `PYBTC_*` variables; raise SettingsError naming a bad one."""
        env = os.environ if environ is None else environ
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for key, raw in env.items():
            if not key.startswith(PREFIX) or key in CLIENT_ONLY:
                continue
            name = key[len(PREFIX) :].lower()
            if name not in known:
                extra[key] = raw
                continue
            values[name] = _convert(key, raw, known[name].type)
        offset = values.pop("port_offset", 0)
        return cls(**values, extra=extra).shifted(offset).validate()

    def validate(self) -> Settings:
        """These settings, or SettingsError naming the first value `RULES` refuses."""
        for name, rule in RULES.items():
            value = getattr(self, name)
            if value == "" and DEFAULTS[name] == "":
                continue  # unset: the documented default applies
            if not rule.ok(value):
                raise SettingsError(f"{PREFIX}{name.upper()}={value!r}: {rule.allowed}")
        return self


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses (the host a node listens on)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DEFAULTS = {f.name: f.default for f in fields(Settings)}


def _convert(key: str, raw: str, kind: object) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    rule = RULES.get(key[len(PREFIX) :].lower())
    convert: Callable[[str], Any] = {"int": int, "float": float, "Path": Path}.get(kind_name, str)
    try:
        return convert(raw)
    except ValueError:
        allowed = rule.allowed if rule else f"a {kind_name}"
        raise SettingsError(f"{key}={raw!r}: {allowed}") from None

"""Which Host names a service answers, and which browser pages may change its state.

Two attacks from a web page on the machine of someone running a node, and the rule for each:

- **DNS rebinding.** A page at `http://rebind.example:5000`, a name its owner points at
  127.0.0.1 after the page has loaded, is same-origin with the node in the browser's eyes: it
  can read the node's answers and get the wallet's CSRF token. Its requests carry
  `Host: rebind.example:5000`, so every service answers only to its own names
  (`AllowedHosts`): the address it listens on, `localhost`, `127.0.0.1`, `[::1]`, the hosts
  of the node's URLs (`PYBTC_PUBLIC_URL`, `PYBTC_LEDGER_URL`, `PYBTC_EXPLORER_PUBLIC_URL`) and
  `PYBTC_ALLOWED_HOSTS`. Any other Host, or none, is a 421 `host-not-allowed`. A service
  listening on every address (0.0.0.0 or ::, as in the compose stack) also answers to any IP
  literal: a rebinding page needs a name it owns, and an address cannot be rebound, while
  health probes, Prometheus and peers on a LAN often name a container or a machine by address.
- **Cross-site requests.** A page of another site can send a request it cannot read the answer
  of (`fetch(..., {mode: "no-cors"})`, a form): a `POST /nodes/register` as `text/plain`, a
  `GET /mine`. A state-changing request (any method but GET, HEAD and OPTIONS, and the GET
  routes a service names, e.g. the ledger's `/mine`) is refused 403 `cross-site` when its
  `Origin` is not one of the node's own, or when `Sec-Fetch-Site` says `cross-site` or
  `same-site` (a page on another port of localhost is same-site) without an own `Origin`. One
  with a body must say `Content-Type: application/json` (or `application/<x>+json`), which a
  page can send to another origin only after a CORS preflight no service grants; anything else
  is 415 `unsupported-media-type`. Programs (requests, curl, other nodes, the node's services)
  send neither header and pass.

An own origin is `http(s)://<allowed host>:<port>` where the port is one of this node's service
ports, a port of its URLs, or the port of the request's own Host (the same origin seen through
a port mapping or a proxy; the Host's name has been checked already, so a rebinding page cannot
use that).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from services.common.settings import Settings
from services.common.web import Handler, ServiceError

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names of "every address", compared
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BROWSER_SITES = frozenset({"cross-site", "same-site"})
DEFAULT_PORTS = {"http": 80, "https": 443}

_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?")


def split_host(value: str) -> tuple[str, int | None] | None:
    """The name and port of a Host header (or a URL's `host[:port]`), the name lower case,
    without a trailing dot, an IP address in its normal form and without brackets; None if it
    is not a well-formed host."""
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        name, port_text = inside, rest[1:] if rest else None
    else:
        name, colon, port_text_ = value.partition(":")
        port_text = port_text_ if colon else None
    port = None
    if port_text is not None:
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
            return None
        port = int(port_text)
    normal = normal_name(name, bracketed=value.startswith("["))
    return None if normal is None else (normal, port)


def normal_name(name: str, *, bracketed: bool = False) -> str | None:
    """A host name compared as browsers send it; None if it is neither a name nor an address."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        if bracketed:
            return None
    name = name.lower().removesuffix(".")
    return name if _NAME.fullmatch(name) else None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def parse_allowed_hosts(text: str) -> frozenset[str]:
    """`PYBTC_ALLOWED_HOSTS`: comma-separated names or addresses, without ports."""
    names = set()
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        parsed = split_host(entry) if entry.startswith("[") else (normal_name(entry), None)
        if parsed is None or parsed[0] is None or parsed[1] is not None:
            raise ValueError(
                f"PYBTC_ALLOWED_HOSTS: {entry!r} is not a host name or address "
                "(names only: no scheme, no port, no path)"
            )
        names.add(parsed[0])
    return frozenset(names)


@dataclass(frozen=True)
class AllowedHosts:
    """The names a node's services answer to, and the ports of its own pages."""

    names: frozenset[str]
    any_address: bool
    """True when the node listens on every address: any IP literal is one of its names."""
    ports: frozenset[int]

    @classmethod
    def from_settings(cls, settings: Settings) -> AllowedHosts:
        names = set(LOOPBACK_NAMES) | parse_allowed_hosts(settings.allowed_hosts)
        ports = {
            settings.ledger_port,
            settings.miner_port,
            settings.explorer_port,
            settings.wallet_port,
        }
        for url in _node_urls(settings):
            parts = urlsplit(url)
            host = normal_name(parts.hostname or "")
            if host is not None:
                names.add(host)
            try:
                port = parts.port or DEFAULT_PORTS.get(parts.scheme)
            except ValueError:  # a malformed port in a URL setting: no port of ours
                port = None
            if port is not None:
                ports.add(port)
        listen = normal_name(settings.host)
        if settings.host not in WILDCARDS and listen is not None:
            names.add(listen)
        return cls(frozenset(names), settings.host in WILDCARDS, frozenset(ports))

    def allows(self, name: str) -> bool:
        """Whether `name` (normalised by `split_host`) is one of this node's."""
        return name in self.names or (self.any_address and _is_address(name))

    def own_origin(self, origin: str, host: str) -> bool:
        """Whether `origin` (an Origin header) is a page of this node, for a request whose
        Host header is `host`."""
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or parts.path or parts.query or "@" in parts.netloc:
            return False
        where = split_host(parts.netloc)
        if where is None or not self.allows(where[0]):
            return False
        port = where[1] or DEFAULT_PORTS[scheme]
        if port in self.ports:
            return True
        target = split_host(host)
        return target is not None and port == (target[1] or DEFAULT_PORTS[scheme])


def _node_urls(settings: Settings) -> Iterable[str]:
    """The URLs others reach this node's services at."""
    return (
        settings.ledger_public_url,
        settings.ledger_internal_url,
        settings.explorer_url,
        settings.miner_internal_url,  # the ledger asks its miner for GET /mine there
    )


class BrowserGuard:
    """The two middlewares of a service: `hosts` (every request) and `writes` (state changes)."""

    def __init__(self, allowed: AllowedHosts, state_changing_gets: frozenset[str] = frozenset()):
        self.allowed = allowed
        self.state_changing_gets = state_changing_gets
        """Routes (as registered, e.g. "/mine") whose GET and HEAD change state."""

    @classmethod
    def from_settings(
        cls, settings: Settings, state_changing_gets: Iterable[str] = ()
    ) -> BrowserGuard:
        return cls(AllowedHosts.from_settings(settings), frozenset(state_changing_gets))

    @web.middleware
    async def hosts(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """421 `host-not-allowed` unless the Host header names this node."""
        host = request.headers.get(hdrs.HOST)
        where = split_host(host) if host else None
        if where is None or not self.allowed.allows(where[0]):
            logger.info("host refused host=%.100r path=%.100s", host, request.path)
            raise ServiceError(
                421,
                "host-not-allowed",
                f"this node does not answer to the host {str(host)[:100]!r}: use one of its "
                "names (localhost, 127.0.0.1, its public URL's host) or add it to "
                "PYBTC_ALLOWED_HOSTS",
            )
        return await handler(request)

    @web.middleware
    async def writes(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """403 `cross-site` and 415 `unsupported-media-type` for state changes from pages."""
        if request.match_info.http_exception is None and self._changes_state(request):
            self.check_site(request)
            if request.method not in SAFE_METHODS and request.body_exists:
                check_json_body(request)
        return await handler(request)

    def _changes_state(self, request: web.Request) -> bool:
        if request.method not in SAFE_METHODS:
            return True
        resource = request.match_info.route.resource
        return resource is not None and resource.canonical in self.state_changing_gets

    def check_site(self, request: web.Request) -> None:
        """403 `cross-site` for a request a page of another site sent."""
        origin = request.headers.get(hdrs.ORIGIN)
        site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
        own = origin is not None and self.allowed.own_origin(origin, request.host)
        if own or (origin is None and site not in BROWSER_SITES):
            return
        logger.info(
            "cross-site request refused origin=%.100r site=%.20s method=%s path=%.100s",
            origin,
            site,
            request.method,
            request.path,
        )
        raise ServiceError(
            403,
            "cross-site",
            f"{request.method} {request.path[:100]} changes this node's state and a page of "
            "another site may not ask for it; programs (curl, requests) send no Origin",
        )


def check_json_body(request: web.Request) -> None:
    """415 `unsupported-media-type` unless the body is declared JSON."""
    declared = hdrs.CONTENT_TYPE in request.headers
    media = request.content_type if declared else ""
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise ServiceError(
        415,
        "unsupported-media-type",
        f"send the body as Content-Type: application/json (not {media or 'no type'!r})",
    )


GUARD = web.AppKey("browser_guard", BrowserGuard)

"""Typed keys of the ledger application's state (aiohttp `AppKey`s)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from services.common.bus import Bus
from services.common.quota import ClientQuota
from services.common.settings import Settings
from services.node.announce import Announcer
from services.node.ledger import Ledger
from services.node.mine import MineDesk
from services.node.network import Network

SETTINGS = web.AppKey("settings", Settings)
LEDGER = web.AppKey("ledger", Ledger)
ANNOUNCER = web.AppKey("announcer", Announcer)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
BUS: web.AppKey[Bus | None] = web.AppKey("bus")
NETWORK = web.AppKey("network", Network)
MINE_DESK = web.AppKey("mine_desk", MineDesk)
BAD_BLOCKS = web.AppKey("bad_blocks", ClientQuota)
"""Refused /mining/submit blocks per client (PYBTC_BAD_BLOCKS_PER_MINUTE)."""

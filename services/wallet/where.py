"""Where `pybtc wallet` finds the node: the PYBTC_* settings a node on this machine runs with,
so that the environment that moved a node moves its wallet too (docs/wallet.md).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click

from services.common.entry import load_settings
from services.common.settings import Settings


@functools.cache
def node_settings() -> Settings:
    """The PYBTC_* settings a node on this machine runs with (exit 2 naming a bad one)."""
    return load_settings()


def ledger_default() -> tuple[str, str]:
    """The ledger a command reaches without --node, and which settings said so."""
    settings = node_settings()
    if settings.ledger_url:
        return settings.ledger_url, "PYBTC_LEDGER_URL"
    if settings.public_url:
        return settings.public_url, "PYBTC_PUBLIC_URL"
    return settings.ledger_client_url, "PYBTC_HOST, PYBTC_LEDGER_PORT and PYBTC_PORT_OFFSET"


def wallet_service_default() -> tuple[str, str]:
    """The wallet service a command reaches without --wallet-url, and which settings said so."""
    if os.environ.get("PYBTC_WALLET_URL"):
        return os.environ["PYBTC_WALLET_URL"], "PYBTC_WALLET_URL"
    url = node_settings().wallet_client_url
    return url, "PYBTC_HOST, PYBTC_WALLET_PORT and PYBTC_PORT_OFFSET"


class SettingsDefault(click.Option):
    """An option whose default comes from the node's settings, shown in --help with its source."""

    def __init__(self, *args: Any, resolve: Callable[[], tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, default=lambda: resolve()[0], **kwargs)
        self.resolve = resolve
        self.base_help = self.help or ""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        url, source = self.resolve()
        self.help = f"{self.base_help} [default: {url}, from {source}]"
        return super().get_help_record(ctx)

"""The devnet faucet: test coins from the node's own key, a few at a time.

One payment at a time (a lock keeps nonces in order), each a normal signed transaction that
the ledger validates like any other. Rate limits: the same address, or the same client, is
paid at most once per `faucet_interval` seconds; the memory of both is bounded. The per-client
rule applies to clients that are not on loopback only, so two browser wallets on the node's own
machine can both be funded (the per-address rule stays for everyone).

An operator payment (`amount` given: the operator token, or a loopback client when no token is
set) is not rate-limited; its amount is checked against what the node key can spend.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from pybtc import PrivateKey, Transaction, format_amount
from services.common.ledger_client import LedgerClient
from services.common.limits import LOOPBACK_CLIENT
from services.common.node_key import load_or_create_node_key
from services.common.settings import Settings
from services.common.web import ServiceError

REMEMBERED = 10_000  # addresses and clients whose last payment time is kept


class Faucet:
    def __init__(
        self,
        settings: Settings,
        ledger: LedgerClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.clock = clock
        self.enabled = settings.faucet_on and not settings.miner_address
        self.amount = settings.faucet_amount
        self._key: PrivateKey | None = None
        self._lock = asyncio.Lock()
        self._last: OrderedDict[str, float] = OrderedDict()

    @property
    def key(self) -> PrivateKey:
        if self._key is None:
            self._key = load_or_create_node_key(self.settings)
        return self._key

    def _wait_left(self, *names: str) -> float:
        now = self.clock()
        waits = [
            self.settings.faucet_interval - (now - self._last[name])
            for name in names
            if name in self._last
        ]
        return max([0.0, *waits])

    def _remember(self, *names: str) -> None:
        now = self.clock()
        for name in names:
            self._last.pop(name, None)
            self._last[name] = now
        while len(self._last) > REMEMBERED:
            self._last.popitem(last=False)

    async def pay(self, address: str, client: str, *, amount: int | None = None) -> Transaction:
        """Send the faucet amount to `address` (already checked), or refuse with a
        ServiceError. A loopback `client` has no per-client rule. `amount`: an operator payment
        of that many units (the caller checked who asks), not rate-limited."""
        if self.settings.miner_address:
            raise ServiceError(
                403,
                "faucet-off",
                "this node mines to PYBTC_MINER_ADDRESS; the faucet can only spend the node's key",
            )
        if not self.enabled:
            raise ServiceError(403, "faucet-off", "the faucet is switched off on this node")
        if amount is not None and (
            isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0
        ):
            raise ServiceError(400, "bad-amount", "amount is a positive whole number of units")
        operator = amount is not None
        pay = self.amount if amount is None else amount
        names: tuple[str, ...] = ()
        if not operator:
            names = (f"address:{address}",)
            if client != LOOPBACK_CLIENT:
                names += (f"client:{client}",)
        async with self._lock:
            wait = self._wait_left(*names)
            if wait > 0:
                raise RateLimitedError(wait)
            key = self.key
            if address == key.address:
                raise ServiceError(400, "self-send", "that is the faucet's own address")
            account = await self.ledger.get(f"/address/{key.address}")
            spendable = account["spendable"]  # the ledger's own figure: what it will accept
            fee = self.settings.min_fee
            if operator and spendable < pay + fee:
                raise ServiceError(
                    400,
                    "amount-over-balance",
                    f"the node key can spend {format_amount(max(0, spendable - fee))} pyBTC "
                    f"after the {format_amount(fee)} fee, less than {format_amount(pay)}",
                )
            if spendable < pay + fee:
                raise ServiceError(
                    503,
                    "faucet-empty",
                    f"the faucet holds {format_amount(spendable)} pyBTC "
                    "(spendable after pending payments): mine a block first (GET /mine on the "
                    "ledger)",
                )
            tx = Transaction.create(
                key,
                address,
                pay,
                fee=fee,
                nonce=account["next_nonce"],
                timestamp=int(time.time()),
                network_id=self.settings.params.network_id,
            )
            status, body = await self.ledger.request("POST", "/transactions/new", json=tx.to_dict())
            if status != 201:
                message = body.get("error", "") if isinstance(body, dict) else ""
                reason = body.get("reason", "ledger-refused") if isinstance(body, dict) else ""
                raise ServiceError(502, str(reason), f"the ledger refused the payment: {message}")
            self._remember(*names)
            return tx


class RateLimitedError(ServiceError):
    def __init__(self, wait: float) -> None:
        self.retry_after = max(1, int(wait + 0.999))
        super().__init__(
            429,
            "rate-limited",
            f"the faucet paid this address or this client recently; try again in "
            f"{self.retry_after} s",
        )

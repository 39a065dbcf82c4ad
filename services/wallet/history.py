"""`pybtc wallet history`'s table: one line per entry (status, date, counterparty, change, fee,
running balance, txid), and for a dropped or re-queued one a second line saying why. The date
is the block's time for a confirmed entry, when it was dropped for a dropped one, and the
transaction's own timestamp for a pending one (all UTC).

The page is the ledger's `GET /address/{a}/history` answer (docs/api.yaml): `dropped` (recent
fates of transactions that left the mempool without a block), `pending`, then `confirmed`
newest first, each confirmed entry with `block_time` and `balance_after`.
"""

from __future__ import annotations

import time
from typing import Any

from pybtc import format_amount

DROP_REASONS = {
    "bad-nonce": "another transaction with its nonce is in the best chain",
    "insufficient-funds": "the coins were no longer there after a reorg",
    "replaced": "replaced by a transaction with the same nonce and a higher fee",
    "mempool-full": "the mempool was full and it paid the lowest fee",
}
"""Why the ledger dropped a transaction, in words (wallet-ui.js has the same list)."""

HEADER = (
    f"{'STATUS':<10} {'DATE (UTC)':<16} {'HEIGHT':>6}  {'COUNTERPARTY':<18} "
    f"{'CHANGE (pyBTC)':>16} {'FEE':>11} {'BALANCE AFTER':>15}  TXID"
)


def when(seconds: Any) -> str:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


def coins(units: Any, *, signed: bool = False) -> str:
    if not isinstance(units, int) or isinstance(units, bool):
        return "-"
    text = format_amount(units)
    return f"+{text}" if signed and units > 0 else text


def counterparty(entry: dict[str, Any], address: str) -> str:
    other = entry.get("counterparty")
    if not isinstance(other, str):
        return "-"
    if other == "coinbase":
        return "mining reward"
    if other == address:
        return "yourself"
    short = f"{other[:7]}…{other[-5:]}" if len(other) > 14 else other
    return f"{'to' if entry.get('delta', 0) < 0 else 'from'} {short}"


def drop_reason(reason: Any) -> str:
    return DROP_REASONS.get(str(reason), str(reason) if reason else "no longer valid")


def paid_fee(entry: dict[str, Any], address: str) -> bool:
    """Whether `address` paid this entry's fee (a dropped entry names no sender: its delta
    tells, as only the sender's is below zero)."""
    if "sender" in entry:
        return bool(entry["sender"] == address)
    return isinstance(entry.get("delta"), int) and entry["delta"] < 0


def _line(status: str, entry: dict[str, Any], address: str, stamp: Any, height: Any) -> str:
    fee = coins(entry.get("fee")) if paid_fee(entry, address) else "-"
    return (
        f"{status:<10} {when(stamp):<16} {height!s:>6}  {counterparty(entry, address):<18} "
        f"{coins(entry.get('delta'), signed=True):>16} {fee:>11} "
        f"{coins(entry.get('balance_after')):>15}  {entry.get('txid', '?')}"
    )


def history_lines(page: dict[str, Any], address: str) -> list[str]:
    """The table of one history page (the header first), or [] when the page is empty."""
    lines: list[str] = []
    for entry in page.get("dropped", []):
        lines.append(_line("dropped", entry, address, entry.get("at"), "-"))
        lines.append(f"{'':<10} dropped: {drop_reason(entry.get('reason'))}")
    for entry in page["pending"]:
        fate = entry.get("fate")
        requeued = isinstance(fate, dict) and fate.get("fate") == "requeued"
        lines.append(
            _line(
                "re-queued" if requeued else "pending", entry, address, entry.get("timestamp"), "-"
            )
        )
        if requeued:
            lines.append(
                f"{'':<10} re-queued at {when(fate.get('at'))}: its block left the best chain "
                "in a reorg; it waits to be mined again"
            )
    for entry in page["confirmed"]:
        lines.append(_line("confirmed", entry, address, entry.get("block_time"), entry["height"]))
    return [HEADER, *lines] if lines else []

"""What the ledger tells about one address: balances with the one "spendable now" figure, and
its history with each entry's parties, amounts, times and running balance.

`spendable` is computed the way `Ledger.submit_transaction` admits a transaction (confirmed
balance less what the sender's pending transactions spend), so a wallet that offers exactly
`spendable` as amount + fee is accepted and one unit more is refused `insufficient-funds`.
Pending incoming coins are not spendable: admission counts only the confirmed balance.
"""

from __future__ import annotations

from typing import Any

from pybtc import Transaction, format_amount
from services.node.ledger import Ledger
from services.node.store import PendingTx, tx_deltas

DROPPED_SHOWN = 20
"""How many of an address's latest dropped transactions its history lists."""
COINBASE = "coinbase"
"""The counterparty of a mining reward."""


def counterparty(address: str, sender: str, recipient: str, is_coinbase: bool) -> str:
    """The other side of a transaction for `address`: itself for a self-send."""
    if is_coinbase:
        return COINBASE
    return recipient if sender == address else sender


def _tx_fields(address: str, tx: Transaction) -> dict[str, Any]:
    return {
        "sender": tx.sender,
        "recipient": tx.recipient,
        "amount": tx.amount,
        "fee": tx.fee,
        "timestamp": tx.timestamp,
        "counterparty": counterparty(address, tx.sender, tx.recipient, tx.is_coinbase),
    }


def _pending_sums(address: str, pending: list[PendingTx]) -> tuple[int, int, int]:
    """(incoming amounts, outgoing amounts + fees, how many are sent by `address`)."""
    incoming = outgoing = sent = 0
    for p in pending:
        if p.tx.sender == address:
            outgoing += p.tx.amount + p.tx.fee
            sent += 1
        if p.tx.recipient == address:
            incoming += p.tx.amount
    return incoming, outgoing, sent


def address_summary(ledger: Ledger, address: str) -> dict[str, Any]:
    """The body of `GET /address/{a}`."""
    account = ledger.account(address)
    pending = ledger.store.mempool_pending_for(address)
    incoming, outgoing, sent = _pending_sums(address, pending)
    return {
        "address": address,
        "balance": account.balance,
        "balance_coins": format_amount(account.balance),
        "unconfirmed_balance": account.balance + incoming - outgoing,
        "spendable": max(0, account.balance - outgoing),
        "pending_in": incoming,
        "pending_out": outgoing,
        "nonce": account.nonce,
        "next_nonce": account.nonce + sent,
        "pending_count": len(pending),
        "history_count": ledger.store.address_history_count(address),
    }


def address_history(ledger: Ledger, address: str, offset: int, limit: int) -> dict[str, Any]:
    """The body of `GET /address/{a}/history`: pending entries, one page of confirmed ones
    (newest first, each with the confirmed balance right after it), and the latest dropped."""
    store = ledger.store
    tip = ledger.height
    # The balance after the page's first entry is today's less what the newer entries did.
    balance = ledger.account(address).balance - store.address_newer_delta(address, offset)
    confirmed = []
    for row in store.address_history(address, offset, limit):
        height, position, txid, delta, sender, recipient, amount, fee, stamp, block_time = row
        confirmed.append(
            {
                "txid": txid,
                "height": height,
                "position": position,
                "delta": delta,
                "confirmations": tip - height + 1,
                "sender": sender,
                "recipient": recipient,
                "amount": amount,
                "fee": fee,
                "timestamp": stamp,
                "counterparty": counterparty(address, sender, recipient, position == 0),
                "block_time": block_time,
                "balance_after": balance,
            }
        )
        balance -= delta
    pending = [
        {"txid": p.tx.txid, "delta": tx_deltas(p.tx).get(address, 0), "status": "pending"}
        | _tx_fields(address, p.tx)
        for p in store.mempool_pending_for(address)
    ]
    requeued = store.requeued_at([entry["txid"] for entry in [*pending, *confirmed]])
    for entry in [*pending, *confirmed]:
        at = requeued.get(entry["txid"])
        entry["fate"] = None if at is None else {"fate": "requeued", "at": at}
    dropped = [
        {
            "txid": tx.txid,
            "fate": "dropped",
            "reason": reason,
            "at": at,
            "delta": tx_deltas(tx).get(address, 0),
            "amount": tx.amount,
            "fee": tx.fee,
            "counterparty": counterparty(address, tx.sender, tx.recipient, tx.is_coinbase),
        }
        for tx, at, reason in store.dropped_for(address, DROPPED_SHOWN)
    ]
    return {
        "address": address,
        "total": store.address_history_count(address),
        "offset": offset,
        "limit": limit,
        "pending": pending,
        "confirmed": confirmed,
        "dropped": dropped,
    }

"""`pybtc wallet history`'s table (services/wallet/history.py) from a ledger history page in
the shape of docs/api.yaml: dates, counterparties, fees, running balance, and fates in words."""

from __future__ import annotations

import calendar

from pybtc import COIN
from services.wallet.history import HEADER, history_lines
from tests.chainutil import test_key

ME, OTHER = test_key(1).address, test_key(2).address
T = calendar.timegm((2026, 12, 7, 22, 10, 0))


def entry(txid: str, sender: str, recipient: str, amount: int, **more: object) -> dict[str, object]:
    mine_out = sender == ME
    delta = (amount if recipient == ME else 0) - (amount + 1_000 if mine_out else 0)
    other = recipient if mine_out else sender
    return {
        "txid": txid,
        "sender": sender,
        "recipient": recipient,
        "amount": amount,
        "fee": 1_000,
        "delta": delta,
        "timestamp": T,
        "counterparty": other,
        **more,
    }


def test_each_kind_of_entry() -> None:
    page = {
        "total": 2,
        "dropped": [  # the ledger's dropped entries name no sender, recipient or timestamp
            {
                "txid": "d" * 64,
                "fate": "dropped",
                "reason": "replaced",
                "at": T + 60,
                "delta": -(COIN + 1_000),
                "amount": COIN,
                "fee": 1_000,
                "counterparty": OTHER,
            }
        ],
        "pending": [entry("r" * 64, ME, OTHER, 2 * COIN, fate={"fate": "requeued", "at": T + 120})],
        "confirmed": [
            entry(
                "c" * 64, OTHER, ME, 3 * COIN, height=7, block_time=T + 30, balance_after=53 * COIN
            ),
            {
                "txid": "b" * 64,
                "sender": "coinbase",
                "recipient": ME,
                "amount": 50 * COIN,
                "fee": 0,
                "delta": 50 * COIN,
                "timestamp": T,
                "counterparty": "coinbase",
                "height": 6,
                "block_time": T,
                "balance_after": 50 * COIN,
            },
        ],
    }
    lines = history_lines(page, ME)
    assert lines[0] == HEADER
    dropped, why, requeued, again, received, reward = lines[1:]
    assert dropped.split()[:3] == ["dropped", "2026-12-07", "22:11"]
    assert f"to {OTHER[:7]}…{OTHER[-5:]}" in dropped
    assert "-1.00001000" in dropped
    assert "0.00001000" in dropped  # this wallet paid the fee
    assert dropped.endswith("d" * 64)
    assert why.strip() == "dropped: replaced by a transaction with the same nonce and a higher fee"
    assert requeued.startswith("re-queued ")
    assert "re-queued at 2026-12-07 22:12: its block left the best chain in a reorg" in again
    assert received.split()[:5] == ["confirmed", "2026-12-07", "22:10", "7", "from"]
    assert received.split()[-4:] == ["+3.00000000", "-", "53.00000000", "c" * 64]
    assert "mining reward" in reward
    assert reward.split()[-3:] == ["-", "50.00000000", "b" * 64]


def test_an_unknown_drop_reason_is_shown_as_it_is() -> None:
    page = {
        "dropped": [entry("d" * 64, ME, OTHER, 1, fate="dropped", reason="expired", at=T)],
        "pending": [],
        "confirmed": [],
    }
    assert history_lines(page, ME)[2].strip() == "dropped: expired"


def test_an_empty_page_has_no_table() -> None:
    assert history_lines({"pending": [], "confirmed": [], "dropped": []}, ME) == []

"""Mining order: the one rule that says which pending transaction a block takes first.

A block may hold a sender's nonce n+1 only after nonce n (`docs/protocol.md` §7.3), so the
order cannot be "highest fee first" alone. `mining_order` takes each sender's transactions
strictly in nonce order and, among the senders' next transactions, the highest fee first
(ties: the one that arrived first). It is a greedy merge of per-sender queues on a heap,
O(n log n). The ledger's block template, `GET /mempool`, `GET /tx/{txid}` and the 201 of
`POST /transactions/new` all use it, so a transaction's position is its place in the next
block. `place_newest` says where a new arrival goes without ordering the pool again (leaving
out a transaction that no other depends on keeps the rest's order too). `projected_blocks`
cuts the order into the blocks it would fill, and `fee_to_reach` says what fee a newcomer
needs to land within a number of them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Pending(Protocol):
    """What the order looks at: a transaction, or a lighter row describing one."""

    @property
    def sender(self) -> str: ...

    @property
    def nonce(self) -> int: ...

    @property
    def fee(self) -> int: ...


P = TypeVar("P", bound=Pending)


def mining_order(pending: Iterable[P]) -> list[P]:
    """`pending` (in arrival order) in the order a block takes them: each sender's strictly by
    nonce; among the senders' next ones, the highest fee first, then the earliest arrival."""
    by_sender: dict[str, list[tuple[int, int, int, P]]] = {}
    for arrival, item in enumerate(pending):
        by_sender.setdefault(item.sender, []).append((item.nonce, arrival, -item.fee, item))
    queues = [sorted(queue, key=lambda entry: entry[0]) for queue in by_sender.values()]
    # (-fee, arrival) never ties (arrivals differ), so the queue's number is never compared
    heap = [(queue[0][2], queue[0][1], number, 0) for number, queue in enumerate(queues)]
    heapq.heapify(heap)
    ordered: list[P] = []
    take = ordered.append
    while heap:
        _, _, number, index = heap[0]
        queue = queues[number]
        take(queue[index][3])
        index += 1
        if index < len(queue):
            _, arrival, neg_fee, _ = queue[index]
            heapq.heapreplace(heap, (neg_fee, arrival, number, index))
        else:
            heapq.heappop(heap)
    return ordered


def place_newest(ordered: Sequence[P], item: P) -> int:
    """Where `item` goes in `ordered` (a `mining_order`) when it arrived after all of them and
    is its sender's highest nonce (a new transaction that replaces nothing): the order with it
    is `ordered[:i] + [item] + ordered[i:]`, as `mining_order` would compute it afresh.

    Until `item` is taken the merge goes as before; it is taken at the first step after its
    sender's last transaction whose pick it outbids (a higher fee: on equal fees the earlier
    arrival wins); after that the merge has the heads it had before, so the rest follows."""
    start = 0
    for index in range(len(ordered) - 1, -1, -1):
        if ordered[index].sender == item.sender:
            start = index + 1
            break
    for index in range(start, len(ordered)):
        if item.fee > ordered[index].fee:
            return index
    return len(ordered)


def projected_blocks(ordered: Sequence[P], capacity: int) -> list[list[P]]:
    """`ordered` (a `mining_order`) cut into the blocks it fills, `capacity` transactions each
    (the coinbase not counted); the last may be partly full. Nothing pending: no blocks."""
    if capacity < 1:
        raise ValueError("a block holds at least one transaction besides its coinbase")
    return [list(ordered[i : i + capacity]) for i in range(0, len(ordered), capacity)]


def projected_block(position: int, capacity: int) -> int:
    """The projected block (1 = the next) of the transaction at `position` (1 = mined first)."""
    return (position - 1) // capacity + 1


@dataclass(frozen=True)
class BlockSummary:
    """One projected block, as mempool.space draws it."""

    block: int
    tx_count: int
    fee_total: int
    fee_min: int
    fee_max: int
    amount_total: int


class Transfer(Pending, Protocol):
    """A pending item that also says how much it moves."""

    @property
    def amount(self) -> int: ...


def summarize(blocks: Sequence[Sequence[Transfer]]) -> list[BlockSummary]:
    """The figures of each projected block (`projected_blocks`), the next one first."""
    out = []
    for number, block in enumerate(blocks, start=1):
        fees = [item.fee for item in block]
        amount = sum(item.amount for item in block)
        out.append(BlockSummary(number, len(block), sum(fees), min(fees), max(fees), amount))
    return out


def fee_to_reach(blocks: Sequence[Sequence[P]], capacity: int, within: int, minimum: int) -> int:
    """The fee a new transaction from a sender with nothing pending needs to be in one of the
    next `within` blocks: `minimum` while block `within` has room, else that block's lowest fee
    plus one (at least `minimum`). Such a fee outbids, at the moment the greedy merge reached
    it, the cheapest transaction that block takes, so the newcomer is taken no later."""
    if len(blocks) < within or len(blocks[within - 1]) < capacity:
        return minimum
    return max(minimum, min(item.fee for item in blocks[within - 1]) + 1)

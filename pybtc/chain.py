"""An in-memory block tree with account state: fork choice by most work, and reorgs.

`MemoryChain` is the protocol's reference model. It keeps every valid block it is given (stale
branches too), follows the branch with the most cumulative work (ties go to the block seen
first), and on a reorg disconnects back to the fork point with the stored undo data and
connects the new branch. If a block of the new branch breaks an account-state rule, it and its
descendants are marked invalid and the old chain is restored. The ledger service does the same
over SQLite with the same functions; tests and property tests use this model directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pybtc.block import Block, BlockHeader
from pybtc.difficulty import Ancestor, ancestor_timestamps, median_time_past, next_bits
from pybtc.errors import ChainError, Reason, ValidationError
from pybtc.mining import build_block, mine_block
from pybtc.params import ChainParams
from pybtc.pow import block_work
from pybtc.state import BlockUndo, connect_block, disconnect_block
from pybtc.transaction import Transaction
from pybtc.validation import (
    Account,
    check_transaction_count,
    validate_block_body,
    validate_block_context,
    validate_genesis,
    validate_header,
)


@dataclass
class _Entry:
    block: Block
    chain_work: int
    invalid: Reason | None = None


@dataclass(frozen=True)
class AddResult:
    """What adding a block did: stored only, extended the tip, or reorganised the chain."""

    block_hash: str
    is_tip: bool
    disconnected: tuple[Block, ...] = field(default=())
    connected: tuple[Block, ...] = field(default=())

    @property
    def reorg_depth(self) -> int:
        """Blocks taken off the old main chain (0 when the tip was simply extended)."""
        return len(self.disconnected)


def prefers(candidate_work: int, tip_work: int) -> bool:
    """Rule fork-choice: switch only to strictly more cumulative work; a tie keeps the tip seen
    first."""
    return candidate_work > tip_work


def reorg_path(
    old_tip: BlockHeader, new_tip: BlockHeader, header: Callable[[str], BlockHeader]
) -> tuple[list[BlockHeader], list[BlockHeader]]:
    """The headers to disconnect (old tip first) and to connect (the fork's child first).

    `header` looks a header up by hash; both tips must descend from a common block (genesis).
    """
    old, new = old_tip, new_tip
    down: list[BlockHeader] = []
    up: list[BlockHeader] = []
    while old.index > new.index:
        down.append(old)
        old = header(old.previous_hash)
    while new.index > old.index:
        up.append(new)
        new = header(new.previous_hash)
    while old.hash != new.hash:
        down.append(old)
        up.append(new)
        old, new = header(old.previous_hash), header(new.previous_hash)
    up.reverse()
    return down, up


class MemoryChain:
    """Blocks of every branch, the main chain by height, account state and undo data."""

    def __init__(self, params: ChainParams) -> None:
        self.params = params
        genesis = params.genesis
        self._entries: dict[str, _Entry] = {
            genesis.hash: _Entry(genesis, block_work(genesis.header.bits))
        }
        self._main: list[str] = []
        self._accounts: dict[str, Account] = {}
        self._undo: dict[str, BlockUndo] = {}
        self._connect(genesis)

    # -- reading ---------------------------------------------------------------------------
    @property
    def tip(self) -> Block:
        return self._entries[self._main[-1]].block

    @property
    def height(self) -> int:
        return len(self._main)

    @property
    def chain_work(self) -> int:
        return self._entries[self._main[-1]].chain_work

    def account(self, address: str) -> Account:
        """The confirmed state of `address` (zero balance and nonce when it never appeared)."""
        return self._accounts.get(address, Account())

    def accounts(self) -> dict[str, Account]:
        """A copy of every account with a non-zero balance or nonce."""
        return {a: acct for a, acct in self._accounts.items() if acct != Account()}

    def block_at(self, height: int) -> Block:
        """The main-chain block at `height` (1 = genesis)."""
        return self._entries[self._main[height - 1]].block

    def main_chain(self) -> list[Block]:
        return [self._entries[h].block for h in self._main]

    def get(self, block_hash: str) -> Block | None:
        entry = self._entries.get(block_hash)
        return entry.block if entry else None

    def is_main(self, block_hash: str) -> bool:
        entry = self._entries.get(block_hash)
        if entry is None:
            return False
        height = entry.block.index
        return height <= len(self._main) and self._main[height - 1] == block_hash

    def ancestor_lookup(self, block_hash: str) -> Ancestor:
        """Header at a height on the branch ending at `block_hash`."""

        def lookup(height: int) -> BlockHeader:
            current = block_hash
            while not self.is_main(current):
                entry = self._entries[current]
                if entry.block.index == height:
                    return entry.block.header
                current = entry.block.previous_hash
            if height > self._entries[current].block.index:  # pragma: no cover - callers ask below
                raise ValueError("height above the branch")
            return self._entries[self._main[height - 1]].block.header

        return lookup

    # -- making blocks ---------------------------------------------------------------------
    def next_block(
        self,
        transactions: Sequence[Transaction],
        miner_address: str,
        *,
        timestamp: int | None = None,
    ) -> Block:
        """A mined block on the tip: the right bits, a valid time, coinbase to `miner_address`."""
        parent = self.tip.header
        ancestor = self.ancestor_lookup(parent.hash)
        mtp = median_time_past(ancestor_timestamps(parent, ancestor, self.params))
        block = build_block(
            self.params,
            parent,
            bits=next_bits(parent, ancestor, self.params),
            transactions=transactions,
            miner_address=miner_address,
            timestamp=max(mtp + 1, parent.timestamp + 1) if timestamp is None else timestamp,
        )
        mined = mine_block(block)
        assert mined is not None  # a 64-bit nonce space is never exhausted at these targets
        return mined

    # -- adding blocks ---------------------------------------------------------------------
    def add_block(self, block: Block, now: int) -> AddResult:
        """Validate and store `block`; move the tip to it if its branch has the most work.

        Raises a ValidationError (the block is not kept, or kept marked invalid when it broke an
        account-state rule on connection) and leaves the main chain and state unchanged then.
        Like Bitcoin Core, a block on a branch with less work passes every rule but the
        account-state ones, which run only when its branch is connected.
        """
        known = self._entries.get(block.hash)
        if known is not None and known.invalid is not None:
            raise ChainError(known.invalid, "block is known to be invalid")
        if known is not None:
            raise ChainError(Reason.DUPLICATE_BLOCK, "block is known already")
        if block.index == 1:
            validate_genesis(block, self.params)
        # Cheapest first (docs/protocol.md §7.7): the header, then its parent, and only then
        # the transactions, whose signatures are most of what a block costs to check.
        check_transaction_count(len(block.transactions), self.params)
        validate_header(block.header, self.params)
        parent = self._entries.get(block.previous_hash)
        if parent is None:
            raise ChainError(Reason.UNKNOWN_PARENT, "previous_hash names no known block")
        if parent.invalid is not None:
            raise ChainError(Reason.INVALID_ANCESTOR, "block builds on an invalid block")
        ancestor = self.ancestor_lookup(parent.block.hash)
        validate_block_context(block.header, parent.block.header, ancestor, self.params, now)
        validate_block_body(block, self.params)
        entry = _Entry(block, parent.chain_work + block_work(block.header.bits))
        self._entries[block.hash] = entry
        if not prefers(entry.chain_work, self.chain_work):
            return AddResult(block.hash, is_tip=False)
        return self._reorganize(block.hash)

    def _reorganize(self, new_tip: str) -> AddResult:
        def header(block_hash: str) -> BlockHeader:
            return self._entries[block_hash].block.header

        down, up = reorg_path(self.tip.header, header(new_tip), header)
        disconnected = [self._disconnect() for _ in down]
        connected: list[Block] = []
        for head in up:
            block = self._entries[head.hash].block
            try:
                self._connect(block)
            except ValidationError as exc:
                self._mark_invalid(block.hash, exc.reason)
                for _ in connected:
                    self._disconnect()
                for old in reversed(disconnected):
                    self._connect(old)
                raise
            connected.append(block)
        return AddResult(new_tip, True, tuple(disconnected), tuple(connected))

    def _connect(self, block: Block) -> None:
        changed, undo = connect_block(block, self.account, self.params)
        self._accounts.update(changed)
        self._undo[block.hash] = undo
        self._main.append(block.hash)

    def _disconnect(self) -> Block:
        block_hash = self._main.pop()
        self._accounts.update(disconnect_block(self._undo.pop(block_hash)))
        return self._entries[block_hash].block

    def _mark_invalid(self, block_hash: str, reason: Reason) -> None:
        self._entries[block_hash].invalid = reason
        for other in self._entries.values():
            if other.invalid is None and self._descends_from(other.block, block_hash):
                other.invalid = Reason.INVALID_ANCESTOR

    def _descends_from(self, block: Block, ancestor_hash: str) -> bool:
        current: Block | None = block
        while current is not None and current.index > 1:
            if current.previous_hash == ancestor_hash:
                return True
            parent = self._entries.get(current.previous_hash)
            current = parent.block if parent else None
        return False

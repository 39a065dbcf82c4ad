"""The ledger's rules over its store: accept blocks (with reorgs) and transactions (the mempool).

Synchronous and single-writer: the HTTP handlers call it from the event loop, one call at a
time, and each call is one SQLite transaction. Consensus comes from `pybtc` (validation,
`connect_block`, `reorg_path`, `prefers`). A block is checked cheapest first (`check_header`,
then its transactions); refusals the hash settles are remembered (`services.node.refusals`);
a block nobody asked for on a branch weaker than the tip is not stored (409 `low-work`); deep
side branches are pruned (`services.node.sidebranches`). The mempool's relay policy:

- a transaction must pass every stateless rule, pay at least `min_fee`, carry its sender's next
  nonce counting pending transactions, and be covered by the balance left after the sender's
  pending spends;
- the same sender and nonce replaces a pending transaction only with a higher fee;
- when full, a better-paying transaction evicts the cheapest one that nothing depends on;
- a replaced or evicted transaction is dropped with its reason (`replaced`, `mempool-full`),
  kept for GET /tx/{txid} like the drops of a tip change: it was answered 201 once;
- confirmed transactions leave the pool; those of disconnected blocks come back; after every
  tip change each affected sender's pending chain is re-checked and what no longer fits is
  dropped (and logged with its reason).

The block template takes the pool in mining order (`pybtc.mempool.mining_order`, docs/protocol.md
§7.3.1), the same `mempool_view` that the HTTP views read positions and waits from.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pybtc import (
    Account,
    Block,
    BlockHeader,
    ChainParams,
    Reason,
    Transaction,
    ValidationError,
    connect_block,
    disconnect_block,
)
from pybtc.chain import prefers, reorg_path
from pybtc.difficulty import ancestor_timestamps, median_time_past, next_bits
from pybtc.errors import ChainError
from pybtc.mempool import mining_order
from pybtc.mining import build_block
from pybtc.pow import bits_to_target, block_work
from pybtc.validation import (
    check_transaction_count,
    validate_block_body,
    validate_block_context,
    validate_genesis,
    validate_header,
    validate_transaction,
)
from services.common.web import ServiceError
from services.node.mempoolview import MempoolView
from services.node.refusals import RefusedBlocks
from services.node.sidebranches import (
    PRUNE_DEPTH,
    PRUNE_GRACE,
    note_stored,
    prune,
    prune_invalid,
)
from services.node.store import MempoolEntry, Store

logger = logging.getLogger(__name__)

FATES_KEPT = 10_000
"""How many re-queued or dropped transactions GET /tx/{txid} can still tell about."""


@dataclass(frozen=True)
class MempoolPolicy:
    """The node's relay policy (not consensus)."""

    max_count: int = 5_000
    min_fee: int = 1_000


@dataclass
class TipChange:
    """What moving the tip did, for announcements and the reorg log."""

    old_tip: str
    new_tip: str
    height: int
    disconnected: list[Block] = field(default_factory=list)
    connected: list[Block] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    fates: dict[str, tuple[Transaction, str | None]] = field(default_factory=dict)
    """Each re-queued or dropped transaction with the reason it was dropped (None: re-queued)."""

    @property
    def is_reorg(self) -> bool:
        return bool(self.disconnected)

    def requeue(self, tx: Transaction) -> None:
        self.requeued.append(tx.txid)
        self.fates[tx.txid] = (tx, None)

    def drop(self, tx: Transaction, reason: str) -> None:
        if tx.txid in self.requeued:
            self.requeued.remove(tx.txid)
        self.dropped.append(tx.txid)
        self.fates[tx.txid] = (tx, reason)


@dataclass(frozen=True)
class BlockResult:
    block: Block
    tip_change: TipChange | None

    @property
    def is_tip(self) -> bool:
        return self.tip_change is not None and self.tip_change.new_tip == self.block.hash


@dataclass(frozen=True)
class TxResult:
    tx: Transaction
    is_new: bool
    replaced: str | None = None
    evicted: str | None = None


class Ledger:
    """A node's chain state, mempool and their rules."""

    def __init__(
        self,
        store: Store,
        params: ChainParams,
        policy: MempoolPolicy,
        *,
        rejection_log_size: int = 1_000,
        prune_depth: int = PRUNE_DEPTH,
        prune_grace: int = PRUNE_GRACE,
    ) -> None:
        self.store = store
        self.params = params
        self.policy = policy
        self.rejection_log_size = rejection_log_size
        self.prune_depth = prune_depth
        self.prune_grace = prune_grace
        self.refused = RefusedBlocks()
        self.checks: Counter[str] = Counter()
        """Blocks that reached the header rules and the transaction rules (`header`, `body`)."""
        self._view: MempoolView | None = None
        self._view_key = (-1, -1)
        self._parsed: dict[str, Transaction] = {}
        self._init_genesis()
        self._resume()

    def _init_genesis(self) -> None:
        genesis = self.params.genesis
        stored = self.store.get_meta("genesis")
        if stored is not None:
            if stored != genesis.hash:
                raise RuntimeError(
                    f"{self.store.path} holds another network's chain (genesis {stored[:16]}…)"
                )
            return
        with self.store.transaction():
            self.store.insert_block(genesis, block_work(genesis.header.bits), genesis.timestamp)
            self._connect(genesis)
            self.store.set_meta("genesis", genesis.hash)
            self.store.set_meta("network", self.params.name)

    def _resume(self) -> None:
        """Finish a tip move that a crash interrupted: a stored block may have more work."""
        best = self.store.best_valid_tip()
        best_meta = self.store.block_meta(best) if best else None
        if best and best_meta and prefers(best_meta[1], self.chain_work()):
            logger.warning("resuming tip move after restart new_tip=%s", best[:16])
            try:
                self._reorganize(best, self.tip_header().timestamp)
            except ValidationError as exc:
                logger.warning("stored branch is invalid reason=%s", exc.reason)
                self._resume()

    # -- reading ---------------------------------------------------------------------------
    @property
    def tip_hash(self) -> str:
        tip = self.store.get_meta("tip")
        assert tip is not None
        return tip

    @property
    def height(self) -> int:
        return self.store.main_height()

    def tip_header(self) -> BlockHeader:
        header = self.store.get_header(self.tip_hash)
        assert header is not None
        return header

    def chain_work(self) -> int:
        meta = self.store.block_meta(self.tip_hash)
        assert meta is not None
        return meta[1]

    def account(self, address: str) -> Account:
        return self.store.account(address)

    def ancestor_lookup(self, block_hash: str) -> Any:
        """Header at a height on the branch ending at `block_hash` (main chain used when met)."""
        store = self.store

        def lookup(height: int) -> BlockHeader:
            current = store.get_header(block_hash)
            while current is not None and not store.is_main(current.hash, current.index):
                if current.index == height:
                    return current
                current = store.get_header(current.previous_hash)
            main = store.main_hash(height)
            header = store.get_header(main) if main else None
            if header is None:  # pragma: no cover - every stored block descends from genesis
                raise RuntimeError(f"no ancestor at height {height}")
            return header

        return lookup

    # -- blocks ------------------------------------------------------------------------------
    def check_header(
        self, header: BlockHeader, tx_count: int, now: int, *, requested: bool = False
    ) -> int:
        """The cheap rules of a block, before any of its transactions is looked at: known or
        refused already, its transaction count, its own proof of work, its parent, its rules
        against the parent, and (unless a sync asked for it) enough work to be worth storing.
        Returns the chain work the block would have; raises what refuses it."""
        try:
            return self._check_header(header, tx_count, now, requested)
        except ValidationError as exc:
            self.refused.remember(header.hash, exc)
            raise

    def _check_header(self, header: BlockHeader, tx_count: int, now: int, requested: bool) -> int:
        self.refused.check(header.hash)
        meta = self.store.block_meta(header.hash)
        if meta is not None:
            if meta[2] is not None:
                raise ChainError(Reason(meta[2]), "block is known to be invalid")
            raise ChainError(Reason.DUPLICATE_BLOCK, "block is known already")
        self.checks["header"] += 1
        if header.index == 1:
            validate_genesis(header, self.params)
        check_transaction_count(tx_count, self.params)
        validate_header(header, self.params)
        parent_meta = self.store.block_meta(header.previous_hash)
        if parent_meta is None:
            raise ChainError(Reason.UNKNOWN_PARENT, "previous_hash names no known block")
        if parent_meta[2] is not None:
            raise ChainError(Reason.INVALID_ANCESTOR, "block builds on an invalid block")
        parent = self.store.get_header(header.previous_hash)
        assert parent is not None
        validate_block_context(header, parent, self.ancestor_lookup(parent.hash), self.params, now)
        work = parent_meta[1] + block_work(header.bits)
        if not requested and work < self.chain_work():
            # Like Bitcoin Core: a block nobody asked for, on a branch with less work than the
            # tip, is not worth the disk (anyone can make such blocks cheaply low in the
            # chain). A sync asks for such blocks once headers proved their branch is better.
            raise ServiceError(
                409,
                "low-work",
                f"the block's branch has less work than the tip (height {self.height}): not stored",
            )
        return work

    def submit_block(
        self, block: Block, now: int, *, requested: bool = False, header_work: int | None = None
    ) -> BlockResult:
        """Validate and store a block; move the tip if its branch has the most work.

        Cheapest first (docs/protocol.md §7.7): `check_header`, then the transactions. A block
        that a sync asked for (`requested`) is stored even while its branch has less work than
        the tip; any other is refused `low-work` then (409). `header_work` is what
        `check_header` returned for this block's header in the same step (nothing awaited
        since), so that it is not checked twice."""
        work = header_work
        if work is None:
            work = self.check_header(
                block.header, len(block.transactions), now, requested=requested
            )
        self.checks["body"] += 1
        try:
            validate_block_body(block, self.params)
        except ValidationError as exc:
            self.refused.remember(block.hash, exc)
            raise
        with self.store.transaction():
            self.store.insert_block(block, work, now)
            note_stored(self.store, block.index)
        if not prefers(work, self.chain_work()):
            return BlockResult(block, None)
        return BlockResult(block, self._reorganize(block.hash, now, block))

    def prune_side_branches(self, now: int) -> int:
        """Delete the side branches that fork more than `prune_depth` below the tip (see
        `services.node.sidebranches`); how many blocks went."""
        return prune(self.store, self.height, now, self.prune_depth, self.prune_grace)

    def _reorganize(self, new_tip: str, now: int, known: Block | None = None) -> TipChange:
        """Move the tip to `new_tip`; `known` is a block in hand (not read back from the store)."""

        def header(block_hash: str) -> BlockHeader:
            found = self.store.get_header(block_hash)
            assert found is not None
            return found

        old_tip = self.tip_hash
        down, up = reorg_path(header(old_tip), header(new_tip), header)
        change = TipChange(old_tip, new_tip, up[-1].index if up else self.height)
        try:
            with self.store.transaction():
                for head in down:
                    change.disconnected.append(self._disconnect(head.hash, head.previous_hash))
                for head in up:
                    if known is not None and head.hash == known.hash:
                        block = known
                    else:
                        stored = self.store.get_block(head.hash)
                        assert stored is not None
                        block = stored.block
                    try:
                        self._connect(block)
                    except ValidationError as exc:
                        raise _BadBranchError(head.hash, exc) from exc
                    change.connected.append(block)
                self._refresh_mempool(change, now)
                reorg_id = (
                    self.store.log_reorg(
                        now,
                        len(change.disconnected),
                        up[0].index - 1,
                        old_tip,
                        new_tip,
                        change.requeued,
                        change.dropped,
                    )
                    if change.is_reorg
                    else None
                )
                for tx, reason in change.fates.values():
                    fate = "dropped" if reason else "requeued"
                    self.store.record_fate(now, tx, fate, reason, reorg_id, FATES_KEPT)
                self.prune_side_branches(now)  # in the same commit: no fsync of its own
        except _BadBranchError as bad:
            with self.store.transaction():
                self._mark_invalid(bad.block_hash, bad.error.reason)
            self.refused.remember(bad.block_hash, bad.error)
            prune_invalid(self.store)
            raise bad.error from None
        if change.is_reorg:
            logger.warning(
                "reorg depth=%d old_tip=%s new_tip=%s requeued=%d dropped=%d",
                len(change.disconnected),
                old_tip[:16],
                new_tip[:16],
                len(change.requeued),
                len(change.dropped),
            )
        return change

    def _connect(self, block: Block) -> None:
        changed, undo = connect_block(block, self.store.account, self.params)
        self.store.write_accounts(changed)
        self.store.put_undo(undo)
        self.store.index_main_block(block)

    def _disconnect(self, block_hash: str, previous_hash: str) -> Block:
        stored = self.store.get_block(block_hash)
        assert stored is not None
        self.store.write_accounts(disconnect_block(self.store.pop_undo(block_hash)))
        self.store.unindex_main_block(stored.block, previous_hash)
        return stored.block

    def _mark_invalid(self, block_hash: str, reason: Reason) -> None:
        self.store.mark_invalid(block_hash, str(reason))
        pending = self.store.children(block_hash)
        while pending:
            child = pending.pop()
            self.store.mark_invalid(child, str(Reason.INVALID_ANCESTOR))
            pending.extend(self.store.children(child))

    # -- mempool -----------------------------------------------------------------------------
    def submit_transaction(self, tx: Transaction, now: int) -> TxResult:
        """Admit `tx` to the mempool under the relay policy, or raise with a reason."""
        if self.store.mempool_get(tx.txid) is not None:
            return TxResult(tx, is_new=False)
        if self.store.chain_tx(tx.txid) is not None:
            raise ServiceError(409, "already-confirmed", "this transaction is already in a block")
        validate_transaction(tx, self.params)
        if tx.fee < self.policy.min_fee:
            raise ServiceError(
                400, "fee-too-low", f"fee must be at least {self.policy.min_fee} base units"
            )
        account = self.store.account(tx.sender)
        pending, spent = self.store.mempool_sender_totals(tx.sender)
        if tx.nonce < account.nonce:
            raise ValidationError(
                Reason.BAD_NONCE, f"nonce {tx.nonce} is used already; the next is {account.nonce}"
            )
        replaced = None
        if tx.nonce < account.nonce + pending:  # the nonce of a pending one: a replacement
            same_nonce = self.store.mempool_by_sender_nonce(tx.sender, tx.nonce)
            replaced = same_nonce.tx if same_nonce is not None else None
        if replaced is None and tx.nonce != account.nonce + pending:
            raise ValidationError(
                Reason.BAD_NONCE,
                f"nonce {tx.nonce} is not the sender's next nonce {account.nonce + pending} "
                f"({pending} pending)",
            )
        if replaced is not None and tx.fee <= replaced.fee:
            raise ServiceError(
                409,
                "replacement-fee-too-low",
                f"a pending transaction has nonce {tx.nonce}; a replacement must pay a fee "
                f"above {replaced.fee}",
            )
        if replaced is not None:
            spent -= replaced.amount + replaced.fee
        if account.balance - spent < tx.amount + tx.fee:
            raise ValidationError(
                Reason.INSUFFICIENT_FUNDS,
                f"amount + fee is {tx.amount + tx.fee} but the balance after pending spends is "
                f"{account.balance - spent}",
            )
        evicted = None
        if replaced is None and self.store.mempool_count() >= self.policy.max_count:
            cheapest = self.store.mempool_cheapest_leaf(spare_sender=tx.sender)
            if cheapest is None or cheapest.tx.fee >= tx.fee:
                raise ServiceError(
                    503, "mempool-full", "the mempool is full and this fee is not above its lowest"
                )
            evicted = cheapest.tx
        before = self._current_view()
        with self.store.transaction():
            # What leaves the pool was answered 201 once: its fate is kept for GET /tx/{txid}.
            for gone, reason in ((replaced, "replaced"), (evicted, "mempool-full")):
                if gone is not None:
                    self.store.mempool_remove(gone.txid)
                    self._parsed.pop(gone.txid, None)
                    self.store.record_fate(now, gone, "dropped", reason, None, FATES_KEPT)
                    self.log_rejection(now, "tx", gone.txid, reason, f"{tx.txid} pays a higher fee")
            entry = self.store.mempool_add(tx, now)
        if before is not None and replaced is None:  # else the next read orders the pool anew
            self._keep_view(before.admitted(entry, evicted.txid if evicted else None))
        return TxResult(
            tx, True, replaced.txid if replaced else None, evicted.txid if evicted else None
        )

    def _refresh_mempool(self, change: TipChange, now: int) -> None:
        """After a tip change: drop what was confirmed, re-queue what was disconnected,
        re-check every affected sender's pending chain against the new state."""
        senders: set[str] = set()
        confirmed = {tx.txid for b in change.connected for tx in b.transactions}
        for block in change.connected:
            for tx in block.transactions[1:]:
                senders.add(tx.sender)
                self.store.mempool_remove(tx.txid)
        for block in change.disconnected:
            for tx in block.transactions[1:]:
                if tx.txid in confirmed or self.store.mempool_get(tx.txid) is not None:
                    continue
                senders.add(tx.sender)
                taken = {p.tx.nonce for p in self.store.mempool_by_sender(tx.sender)}
                if tx.nonce in taken:  # a pending replacement with the same nonce wins
                    change.drop(tx, "replaced")  # by a pending tx with the same nonce
                    continue
                self.store.mempool_add(tx, now)
                change.requeue(tx)
        for sender in senders:
            account = self.store.account(sender)
            expected, balance = account.nonce, account.balance
            for pending in self.store.mempool_by_sender(sender):
                tx = pending.tx
                if tx.nonce == expected and tx.amount + tx.fee <= balance:
                    expected += 1
                    balance -= tx.amount + tx.fee
                    continue
                reason = Reason.BAD_NONCE if tx.nonce != expected else Reason.INSUFFICIENT_FUNDS
                self.store.mempool_remove(tx.txid)
                self.log_rejection(now, "tx", tx.txid, str(reason), "dropped after a tip change")
                change.drop(tx, str(reason))
        while self.store.mempool_count() > self.policy.max_count:  # re-queued past the limit
            cheapest = self.store.mempool_cheapest_leaf()
            if cheapest is None:  # pragma: no cover - a non-empty pool has a leaf
                break
            txid = cheapest.tx.txid
            self.store.mempool_remove(txid)
            self.log_rejection(now, "tx", txid, "mempool-full", "evicted: a reorg filled the pool")
            change.drop(cheapest.tx, "mempool-full")

    def log_rejection(
        self,
        now: int,
        kind: str,
        object_id: str,
        reason: str,
        message: str,
        source: str = "mempool",
    ) -> None:
        """Remember a refusal for GET /rejections (the newest `rejection_log_size` are kept)."""
        self.store.log_rejection(
            now, kind, object_id, reason, message, source, self.rejection_log_size
        )

    # -- mining ------------------------------------------------------------------------------
    def template(self, miner_address: str, now: int) -> Block:
        """An unmined block on the tip with the first `capacity` pending transactions in mining
        order (`mempool_view`)."""
        parent = self.tip_header()
        ancestor = self.ancestor_lookup(parent.hash)
        mtp = median_time_past(ancestor_timestamps(parent, ancestor, self.params))
        chosen = self._select(self.capacity)
        return build_block(
            self.params,
            parent,
            bits=next_bits(parent, ancestor, self.params),
            transactions=chosen,
            miner_address=miner_address,
            timestamp=max(now, mtp + 1),
        )

    @property
    def capacity(self) -> int:
        """How many non-coinbase transactions one block holds."""
        return self.params.max_block_transactions - 1

    def mempool_view(self) -> MempoolView:
        """The pool in mining order (`pybtc.mempool.mining_order`), computed once per change of
        the pool: every read between two changes shares it."""
        view = self._current_view()
        if view is None:
            view = MempoolView(mining_order(self.store.mempool_entries()), self.capacity)
            self._keep_view(view)
            self._parsed = {t: tx for t, tx in self._parsed.items() if t in view.positions}
        return view

    def _current_view(self) -> MempoolView | None:
        """The kept view if the pool has not changed since it was made."""
        if self._view_key != (self.store.mempool_version, self.capacity):
            return None
        return self._view

    def _keep_view(self, view: MempoolView) -> None:
        self._view, self._view_key = view, (self.store.mempool_version, self.capacity)

    def pending_transactions(self, entries: list[MempoolEntry]) -> list[Transaction]:
        """The transactions of `entries` (from the current `mempool_view`), parsed once each
        while they stay pending."""
        missing = [e.txid for e in entries if e.txid not in self._parsed]
        if missing:
            self._parsed.update(self.store.mempool_transactions(missing))
        return [self._parsed[e.txid] for e in entries]

    def _select(self, limit: int) -> list[Transaction]:
        return self.pending_transactions(self.mempool_view().ordered[:limit])

    def difficulty(self) -> float:
        """How much harder the tip's target is than the network's easiest (Bitcoin's measure)."""
        return self.params.pow_limit / bits_to_target(self.tip_header().bits)


class _BadBranchError(Exception):
    def __init__(self, block_hash: str, error: ValidationError) -> None:
        super().__init__(str(error))
        self.block_hash = block_hash
        self.error = error

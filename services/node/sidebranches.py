"""Side branches: which stored blocks off the main chain are deleted, and when.

A ledger stores a block off its main chain only when a sync asked for it (headers-first proved
its branch better), when its branch has as much work as the tip (a competing tip), or when a
reorg took it off the main chain. Such blocks are kept while a reorg to them is plausible:
after each tip move, a side branch forking more than `PRUNE_DEPTH` blocks below the tip is
deleted with all its descendants, unless one of them arrived less than `PRUNE_GRACE` seconds
ago (a sync may still be fetching the branch). A reorg deeper than that is done by a sync,
which fetches the branch again. The main chain, and the undo data of its blocks, are never
touched: a side block's descendants are all side blocks.

Blocks found invalid when connected (a transfer its sender cannot pay, say: checked only then)
are side blocks too, but on top of the tip, where depth never prunes them while the tip stands
still; each can be a megabyte. At most `INVALID_KEPT` are kept (for `/blocks/{hash}` and the
explorer), the first received deleted first with their descendants; the same block sent again
is refused from the ledger's memory of refusals.

The meta key `pruned_below` is the lowest height that may still hold an unpruned side block,
so each pass scans only the heights that went below the limit since the last one.
"""

from __future__ import annotations

import logging

from services.node.store import Store

logger = logging.getLogger(__name__)

PRUNE_DEPTH = 100
"""Side branches forking more than this many blocks below the tip are deleted."""
PRUNE_GRACE = 600
"""Seconds a side block is kept whatever its depth: a sync may be fetching its branch."""


INVALID_KEPT = 16
"""Stored blocks marked invalid kept at most (the first received deleted first)."""


def prune_invalid(store: Store, keep: int = INVALID_KEPT) -> int:
    """Delete the first received invalid blocks, with their descendants, until at most `keep`
    are stored; returns how many blocks were deleted."""
    invalid = store.invalid_blocks()
    deleted = 0
    with store.transaction():
        for block_hash in invalid[: max(0, len(invalid) - keep)]:
            subtree = store.subtree(block_hash)  # empty: deleted with an ancestor already
            if any(main for _, _, main in subtree):  # pragma: no cover - cannot be; never risk it
                continue
            store.delete_blocks([h for h, _, _ in subtree])
            deleted += len(subtree)
    if deleted:
        logger.info("invalid blocks pruned count=%d kept=%d", deleted, keep)
    return deleted


def pruned_below(store: Store) -> int:
    return int(store.get_meta("pruned_below") or "1")


def note_stored(store: Store, height: int) -> None:
    """A block was stored at `height`: if that is below the pruned heights (a sync's deep
    branch), the next pass looks there again."""
    if height < pruned_below(store):
        store.set_meta("pruned_below", str(height))


def prune(store: Store, tip_height: int, now: int, depth: int, grace: int) -> int:
    """Delete the side branches forking below `tip_height - depth` whose blocks all arrived
    before `now - grace`; returns how many blocks were deleted."""
    cutoff = tip_height - depth
    low = pruned_below(store)
    if cutoff <= low:
        return 0
    deleted = 0
    keep_from = cutoff
    with store.transaction():
        for block_hash, height in store.side_blocks(low, cutoff):
            subtree = store.subtree(block_hash)  # empty: deleted with an ancestor already
            if any(main for _, _, main in subtree):  # pragma: no cover - cannot be; never risk it
                continue
            if any(at > now - grace for _, at, _ in subtree):
                keep_from = min(keep_from, height)
                continue
            store.delete_blocks([h for h, _, _ in subtree])
            deleted += len(subtree)
        store.set_meta("pruned_below", str(keep_from))
    if deleted:
        logger.info("side blocks pruned count=%d below_height=%d", deleted, cutoff)
    return deleted

"""The ledger's memory of blocks it refused lately: a block sent again costs one lookup.

A block's hash commits to its header only; the header commits to the transactions through the
Merkle root, and each txid covers the whole transaction, signature included. So the memory is
keyed on the hash alone, and only for reasons that the hash settles for good:

- the header's own rules (`bad-bits`, `bad-pow`, `bad-genesis`) and its rules against the parent
  it names (`bad-index`, `bad-difficulty`, `time-too-old`, `invalid-ancestor`): every block with
  that hash has that header and that parent;
- every rule checked after the Merkle root matched (`duplicate-tx`, the coinbase, each
  transaction's own rules, the account-state rules): past that check the hash names these very
  transactions.

Never remembered, because another block with the same hash may pass, or the same block later:
`no-transactions`, `block-too-large`, `bad-merkle-root` and the decoding of the transactions
(the same header with other transactions: someone could otherwise make a good block's hash
refused), `unknown-parent`, `time-too-new` and `low-work` (they change with what the node
knows and its clock), `duplicate-block`.
"""

from __future__ import annotations

from collections import OrderedDict

from pybtc import Reason, ValidationError
from pybtc.errors import BlockError

COST_BYTES = 100_000
"""A refused block counts 1 against the client that sent it (the BAD_BLOCKS quota), plus 1 for
each whole this many bytes of it (unless it was answered from this memory, which costs next to
nothing)."""

REFUSALS_KEPT = 4_096
"""Refused block hashes remembered (the least recently seen forgotten first): about 1 MB."""

REMEMBERED = frozenset(
    {
        Reason.BAD_BITS,
        Reason.BAD_POW,
        Reason.BAD_GENESIS,
        Reason.BAD_INDEX,
        Reason.BAD_PREV_HASH,
        Reason.BAD_DIFFICULTY,
        Reason.TIME_TOO_OLD,
        Reason.INVALID_ANCESTOR,
        Reason.DUPLICATE_TX,
        Reason.BAD_COINBASE,
        Reason.MULTIPLE_COINBASE,
        Reason.COINBASE_OUTSIDE_BLOCK,
        Reason.BAD_AMOUNT,
        Reason.BAD_FEE,
        Reason.BAD_PUBLIC_KEY,
        Reason.SENDER_KEY_MISMATCH,
        Reason.BAD_SIGNATURE,
        Reason.BAD_NONCE,
        Reason.INSUFFICIENT_FUNDS,
        Reason.BAD_COINBASE_AMOUNT,
    }
)
"""The reasons a block's hash settles (see the module docstring)."""


class RefusedBlocks:
    """Recently refused block hashes with the refusal each got."""

    def __init__(self, size: int = REFUSALS_KEPT) -> None:
        self.size = size
        self.entries: OrderedDict[str, tuple[Reason, str]] = OrderedDict()
        self.hits = 0
        """Blocks answered from this memory (for tests and the log)."""

    def __contains__(self, block_hash: str) -> bool:
        return block_hash in self.entries

    def check(self, block_hash: str) -> None:
        """Raise the refusal `block_hash` got before, if it is remembered."""
        entry = self.entries.get(block_hash)
        if entry is None:
            return
        self.entries.move_to_end(block_hash)
        self.hits += 1
        reason, message = entry
        raise BlockError(reason, f"{message} (refused before)")

    def remember(self, block_hash: str, error: ValidationError) -> None:
        """Keep `error` for `block_hash` if its reason is one the hash settles."""
        if error.reason not in REMEMBERED:
            return
        message = error.message.removesuffix(" (refused before)")
        self.entries[block_hash] = (error.reason, message)
        self.entries.move_to_end(block_hash)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

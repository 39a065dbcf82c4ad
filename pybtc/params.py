"""Chain parameters: every consensus constant of a network, in one frozen object.

Two networks exist. `devnet` makes a block every few seconds on a laptop and retargets its
difficulty; `regtest` has trivial difficulty and no retargeting, so tests mine a block in a
couple of hashes. Each has its own fixed genesis block, which every node of that network
shares (the tutorial made a new genesis with `time()` on each node, so its nodes never agreed).
The Bitcoin Core name of each constant is given beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybtc.block import ZERO_HASH, Block, BlockHeader, merkle_root
from pybtc.encoding import COIN, sha256
from pybtc.keys import address_from_payload
from pybtc.pow import bits_to_target
from pybtc.transaction import Transaction


@dataclass(frozen=True)
class ChainParams:
    """The consensus rules' numbers for one network."""

    name: str
    """Short name used on the command line and in bus channels: 'devnet', 'regtest'."""
    network_id: str
    """Signed into every transaction, so a signature is valid on one network only."""
    genesis: Block
    """Block 1 of this network, fixed (consensus.hashGenesisBlock)."""
    pow_limit_bits: int
    """The easiest target allowed, compact (consensus.powLimit)."""
    target_block_time: int
    """Seconds wanted between blocks (consensus.nPowTargetSpacing)."""
    retarget_interval: int
    """Blocks between difficulty adjustments (DifficultyAdjustmentInterval())."""
    retarget_clamp: int
    """One retarget changes the target by at most this factor either way (Bitcoin: 4)."""
    no_retargeting: bool
    """Keep the genesis difficulty forever (consensus.fPowNoRetargeting, regtest)."""
    median_time_span: int
    """A block's time must exceed the median of this many ancestors (nMedianTimeSpan)."""
    max_future_block_time: int
    """A block's time may be at most this many seconds ahead of the node's clock
    (MAX_FUTURE_BLOCK_TIME)."""
    initial_subsidy: int
    """Base units created by each block before the first halving (50 * COIN)."""
    halving_interval: int
    """Blocks between halvings of the subsidy (consensus.nSubsidyHalvingInterval)."""
    max_block_transactions: int
    """At most this many transactions in one block, coinbase included (a MAX_BLOCK_WEIGHT
    stand-in)."""

    @property
    def pow_limit(self) -> int:
        """The easiest target allowed, as an integer."""
        return bits_to_target(self.pow_limit_bits)

    @property
    def target_timespan(self) -> int:
        """Seconds a retarget window should take: its interval - 1 block gaps."""
        return (self.retarget_interval - 1) * self.target_block_time

    def subsidy(self, height: int) -> int:
        """Rule subsidy: initial_subsidy halved every halving_interval blocks (genesis included)."""
        if height < 1:
            raise ValueError("block heights start at 1 (the genesis block)")
        halvings = (height - 1) // self.halving_interval
        return self.initial_subsidy >> halvings if halvings < 64 else 0

    def total_supply(self, height: int) -> int:
        """The sum of subsidies of blocks 1..height: all the money a chain of that height holds."""
        total, start = 0, 1
        while start <= height:
            end = min(
                height, start - 1 + self.halving_interval - (start - 1) % self.halving_interval
            )
            total += self.subsidy(start) * (end - start + 1)
            start = end + 1
        return total


GENESIS_MESSAGE = "pyBTC genesis: every node starts from the same block"


def genesis_reward_address(message: str) -> str:
    """The genesis coinbase's recipient: an address over a hash of a message, not of a key.

    Nobody holds a key whose hash is this payload, so the genesis reward can never be spent,
    like Bitcoin's.
    """
    return address_from_payload(sha256(message.encode())[:20])


def make_genesis(*, timestamp: int, bits: int, nonce: int, subsidy: int) -> Block:
    """The genesis block for these constants (its nonce found once, offline)."""
    coinbase = Transaction.coinbase(genesis_reward_address(GENESIS_MESSAGE), subsidy, 1, timestamp)
    header = BlockHeader(
        index=1,
        timestamp=timestamp,
        previous_hash=ZERO_HASH,
        merkle_root=merkle_root([coinbase.txid]),
        bits=bits,
        nonce=nonce,
    )
    return Block(header, (coinbase,))


GENESIS_TIME = 1795132800  # 2026-11-20 00:00:00 UTC

DEVNET = ChainParams(
    name="devnet",
    network_id="pybtc-devnet",
    genesis=make_genesis(
        timestamp=GENESIS_TIME, bits=0x1E080000, nonce=6_001_866, subsidy=50 * COIN
    ),
    pow_limit_bits=0x1F00FFFF,
    target_block_time=5,
    retarget_interval=20,
    retarget_clamp=4,
    no_retargeting=False,
    median_time_span=11,
    max_future_block_time=120,
    initial_subsidy=50 * COIN,
    halving_interval=210_000,
    max_block_transactions=2_000,
)

REGTEST = ChainParams(
    name="regtest",
    network_id="pybtc-regtest",
    genesis=make_genesis(timestamp=GENESIS_TIME, bits=0x207FFFFF, nonce=1, subsidy=50 * COIN),
    pow_limit_bits=0x207FFFFF,
    target_block_time=5,
    retarget_interval=20,
    retarget_clamp=4,
    no_retargeting=True,
    median_time_span=11,
    max_future_block_time=7_200,
    initial_subsidy=50 * COIN,
    halving_interval=150,
    max_block_transactions=2_000,
)

NETWORKS = {params.name: params for params in (DEVNET, REGTEST)}


def get_params(name: str) -> ChainParams:
    """The parameters of the network called `name`; ValueError names the known ones."""
    try:
        return NETWORKS[name]
    except KeyError:
        known = ", ".join(sorted(NETWORKS))
        raise ValueError(f"unknown network {name!r} (known: {known})") from None

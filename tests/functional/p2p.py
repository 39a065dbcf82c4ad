"""Helpers for multi-node tests, after Bitcoin Core's functional test framework.

- `start_ledgers` starts named ledger processes (`node0`, `node1`, ...) with the same settings.
- `connect_nodes` is the tutorial's `POST /nodes/register`; `peer_urls` reads `GET /nodes`.
- `sync_blocks` / `sync_mempools` wait until every node reports the same tip (`GET /status`) or
  the same pending txids (`GET /mempool`); on timeout they fail listing every node's height,
  tip, mempool and peers, with the end of each node's log.
- `build_chain` mines a regtest chain in-process (pybtc) and `submit_blocks` hands its blocks
  to a ledger the way a miner does: hundreds of blocks for the cost of one request each.
- `start_node` starts a ledger with its miner service (`GET /mine` needs the miner and a bus),
  `mine_on_demand` is the tutorial's `GET /mine`, `mine_empty` mines blocks that leave the
  mempool alone; `sync_peers` waits for a full mesh of registrations; `assert_same_balances`
  compares every node's view of some accounts.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from pybtc import REGTEST, Block, MemoryChain
from pybtc.mining import build_block, mine_block
from tests.functional.conftest import ChildProcesses, LedgerProcess, get_json, http
from tests.functional.test_miner import MinerProcess

logger = logging.getLogger(__name__)

POLL = 0.05
LOG_LINES_ON_FAILURE = 12


def start_ledgers(
    children: ChildProcesses,
    tmp_path: Path,
    count: int,
    *,
    redis_url: str = "",
    env: Mapping[str, str] | None = None,
    first: int = 0,
) -> list[LedgerProcess]:
    """Start `count` regtest ledgers named node<first>, node<first+1>, ... and wait for each."""
    nodes = []
    for i in range(first, first + count):
        node = LedgerProcess(children, tmp_path / f"node{i}", redis_url=redis_url, extra_env=env)
        node.start()
        logger.info("%s up url=%s", name(node), node.url)
        nodes.append(node)
    return nodes


def name(node: LedgerProcess) -> str:
    return node.data_dir.name


class HasUrl(Protocol):
    """A ledger of any harness: a LedgerProcess, a chaos run's node."""

    @property
    def url(self) -> str: ...


def status(node: HasUrl) -> dict[str, Any]:
    """The node's `GET /status`."""
    body: dict[str, Any] = get_json(f"{node.url}/status")
    return body


def mempool_txids(node: HasUrl) -> list[str]:
    """The node's pending txids in mining order (every one, however many pages)."""
    txids: list[str] = []
    while True:
        page = get_json(f"{node.url}/mempool?offset={len(txids)}&limit=500")["transactions"]
        txids += [tx["txid"] for tx in page]
        if len(page) < 500:
            return txids


def peer_urls(node: LedgerProcess) -> set[str]:
    """The URLs in the node's `GET /nodes`."""
    return {peer["url"] for peer in get_json(f"{node.url}/nodes")["peers"]}


def describe(nodes: Sequence[LedgerProcess], *, logs: bool = False) -> str:
    """One line per node: height, tip, work, mempool and peers (and its log's end if asked)."""
    lines = []
    for node in nodes:
        try:
            s = status(node)
            pool = sorted(txid[:8] for txid in mempool_txids(node))
            line = (
                f"{name(node)} {node.url} height={s['height']} tip={s['tip'][:16]} "
                f"work={int(s['chain_work'], 16)} mempool={pool} peers={sorted(peer_urls(node))}"
            )
        except Exception as exc:  # a node that cannot answer is part of the picture
            line = f"{name(node)} {node.url} unreachable: {type(exc).__name__}: {exc}"
        lines.append(line)
        if logs:
            tail = node.log().splitlines()[-LOG_LINES_ON_FAILURE:]
            lines += [f"    | {text}" for text in tail]
    return "\n".join(lines)


def wait_until(
    predicate: Callable[[], bool],
    nodes: Sequence[LedgerProcess],
    what: str,
    timeout: float,
) -> float:
    """Poll `predicate` until true and return the seconds it took; fail with every node's state."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f}s\n{describe(nodes, logs=True)}")
        time.sleep(POLL)
    return time.monotonic() - start


def sync_blocks(nodes: Sequence[LedgerProcess], timeout: float = 15.0) -> dict[str, Any]:
    """Wait until every node reports the same tip; return that tip's `/status` (of nodes[0])."""

    def same_tip() -> bool:
        return len({status(node)["tip"] for node in nodes}) == 1

    took = wait_until(same_tip, nodes, "sync_blocks", timeout)
    best = status(nodes[0])
    logger.info("blocks in sync after %.2fs height=%d tip=%s", took, best["height"], best["tip"])
    return best


def sync_mempools(nodes: Sequence[LedgerProcess], timeout: float = 15.0) -> set[str]:
    """Wait until every node's mempool holds the same txids; return them."""

    def same_pool() -> bool:
        return len({frozenset(mempool_txids(node)) for node in nodes}) == 1

    took = wait_until(same_pool, nodes, "sync_mempools", timeout)
    pool = set(mempool_txids(nodes[0]))
    logger.info("mempools in sync after %.2fs size=%d", took, len(pool))
    return pool


def connect_nodes(a: LedgerProcess, b: LedgerProcess) -> dict[str, Any]:
    """`POST a/nodes/register {"nodes": b}`: a handshakes b, adds it, and b registers back."""
    reply = http("POST", f"{a.url}/nodes/register", json_body={"nodes": b.url})
    assert reply.status == 201, f"register {name(b)} at {name(a)}: {reply.status} {reply.text}"
    body: dict[str, Any] = reply.json()
    logger.info("%s registered %s added=%s", name(a), name(b), body["added"])
    return body


def build_chain(count: int, miner_address: str) -> list[Block]:
    """`count` empty regtest blocks on genesis, mined and checked in-process (genesis left out)."""
    chain = MemoryChain(REGTEST)
    now = int(time.time())
    for _ in range(count):
        chain.add_block(chain.next_block([], miner_address), now)
    return chain.main_chain()[1:]


def submit_blocks(node: LedgerProcess, blocks: Sequence[Block]) -> None:
    """POST each block to `/mining/submit`; each must be accepted as the new tip."""
    for block in blocks:
        reply = http("POST", f"{node.url}/mining/submit", json_body=block.to_dict())
        assert reply.status == 201, f"{name(node)} refused block {block.index}: {reply.text}"
        assert reply.json()["is_tip"], reply.text


def requests_served(node: LedgerProcess, route: str) -> int:
    """How many requests to `route` the node answered (any status), from its `/metrics`."""
    reply = http("GET", f"{node.url}/metrics")
    assert reply.status == 200, reply.text
    pattern = re.compile(
        r'^pybtc_http_requests_total\{(?=[^}]*route="' + re.escape(route) + r'")[^}]*\} (\S+)$',
        re.MULTILINE,
    )
    return int(sum(float(value) for value in pattern.findall(reply.text)))


# -- more helpers: whole nodes, peers, balances, empty blocks ----------------------------------


def sync_peers(
    nodes: Sequence[LedgerProcess],
    public_url: Callable[[LedgerProcess], str] | None = None,
    timeout: float = 15.0,
) -> None:
    """Wait until every node's `GET /nodes` lists exactly every other node (by `public_url`:
    the URL a node publishes; its own `url` unless it is reached through a proxy)."""
    url_of = public_url or (lambda node: node.url)

    def mesh() -> bool:
        return all(peer_urls(n) == {url_of(m) for m in nodes if m is not n} for n in nodes)

    took = wait_until(mesh, nodes, "sync_peers: every node knows every other", timeout)
    logger.info("peers in sync after %.2fs: %d nodes, a full mesh", took, len(nodes))


def balances(node: LedgerProcess, addresses: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(balance, nonce) of each address on the node's best chain."""
    found = {}
    for address in addresses:
        info = get_json(f"{node.url}/address/{address}")
        found[address] = (info["balance"], info["nonce"])
    return found


def assert_same_balances(
    nodes: Sequence[LedgerProcess], addresses: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Every node reports the same (balance, nonce) for every address; return them."""
    seen = {name(node): balances(node, addresses) for node in nodes}
    first = next(iter(seen.values()))
    assert all(b == first for b in seen.values()), f"balances differ: {seen}\n{describe(nodes)}"
    return first


def tx_view(node: LedgerProcess, txid: str) -> dict[str, Any]:
    """`GET /tx/{txid}` (it must be known: confirmed, pending or dropped)."""
    body: dict[str, Any] = get_json(f"{node.url}/tx/{txid}")
    return body


def mine_empty(node: LedgerProcess, address: str, count: int = 1) -> list[Block]:
    """Mine `count` blocks on the node's tip with no transaction but the coinbase (a miner may
    leave the mempool alone), each submitted to the node and required to become its tip."""
    blocks = []
    for _ in range(count):
        body = get_json(f"{node.url}/mining/template?address={address}")
        template = Block.from_dict(body["block"])
        parent = Block.from_dict(get_json(f"{node.url}/blocks/{template.previous_hash}")["block"])
        empty = build_block(
            REGTEST,
            parent.header,
            bits=template.header.bits,
            transactions=(),
            miner_address=address,
            timestamp=template.header.timestamp,
        )
        block = mine_block(empty)
        assert block is not None
        submit_blocks(node, [block])
        blocks.append(block)
    return blocks


def healthz(url: str) -> dict[str, Any]:
    """A service's `GET /healthz` body (200 for ok and degraded, 503 for unhealthy)."""
    reply = http("GET", f"{url}/healthz")
    assert reply.status in (200, 503), f"GET {url}/healthz -> {reply.status}: {reply.text[:300]}"
    body: dict[str, Any] = reply.json()
    return body


def mine_on_demand(node: LedgerProcess, timeout: float = 30.0) -> dict[str, Any]:
    """The tutorial's `GET /mine` on the node: its miner service mines one block. Retried while
    the ledger answers 503 `no-miner` (the miner does not listen yet)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = http("GET", f"{node.url}/mine", timeout=timeout)
        if reply.status == 200:
            body: dict[str, Any] = reply.json()
            logger.info("%s GET /mine -> block %d %s", name(node), body["index"], body["hash"])
            return body
        if reply.status != 503 or reply.json().get("reason") != "no-miner":
            pytest.fail(f"{name(node)} GET /mine -> {reply.status}: {reply.text}\n{node.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{name(node)}: no miner heard within {timeout:.0f}s\n{node.log()}")
        time.sleep(0.1)


def start_node(
    children: ChildProcesses,
    tmp_path: Path,
    index: int,
    *,
    redis_url: str,
    miner_address: str,
    env: Mapping[str, str] | None = None,
) -> tuple[LedgerProcess, MinerProcess]:
    """Ledger and on-demand miner of node<index> (bus origin `node<index>`, one hashing
    worker), sharing its data dir and `redis_url`; both answering."""
    node_id = f"node{index}"
    ledger = LedgerProcess(
        children,
        tmp_path / node_id,
        redis_url=redis_url,
        extra_env={"PYBTC_NODE_ID": node_id, **(env or {})},
    )
    ledger.start()
    miner = MinerProcess(
        children,
        ledger.data_dir,
        network="regtest",
        mode="on-demand",
        node=node_id,
        ledger_url=ledger.url,
        port=ledger.miner_port,
        redis_url=redis_url,
        workers=1,
        address=miner_address,
    ).start()
    logger.info("%s up ledger=%s miner=%s", node_id, ledger.url, miner.url)
    return ledger, miner


def requests_answered(node: LedgerProcess, route: str) -> int:
    """Like `requests_served`, for any route, `{placeholders}` included (whose braces that
    helper's pattern cannot cross): requests the node answered on `route`, from `/metrics`."""
    reply = http("GET", f"{node.url}/metrics")
    assert reply.status == 200, reply.text
    label = f'route="{route}"'
    total = 0.0
    for line in reply.text.splitlines():
        if line.startswith("pybtc_http_requests_total{") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)

"""HTTP views of the ledger: the tutorial's endpoints with their shapes, and the REST API.

Each view parses, calls the ledger, and answers; refusals are raised and turned into
`{"error", "reason"}` by the shared error middleware. Rejected transactions and blocks are also
written to the rejection log (`GET /rejections`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from importlib.resources import files
from typing import Any

from aiohttp import web

from pybtc import Block, Transaction, ValidationError, decode_address
from pybtc.block import header_of_block
from pybtc.encoding import check_hex
from pybtc.mempool import projected_block
from services.common.limits import client_key, require_operator
from services.common.settings import Settings
from services.common.web import ServiceError, parse_json, query_int, read_json_object
from services.node.addresses import address_history as history_page
from services.node.addresses import address_summary
from services.node.keys import BAD_BLOCKS, CLOCK, LEDGER, MINE_DESK, NETWORK, SETTINGS
from services.node.ledger import Ledger
from services.node.peer_client import PeerError
from services.node.peers import normalize_peer_url
from services.node.refusals import COST_BYTES

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_PAGE = 500
PROJECTED_BLOCKS = 8
"""Projected blocks GET /mempool/blocks describes one by one (mempool.space draws eight)."""
ECONOMY_BLOCKS = 3
"""GET /fees's `economy`: the fee that lands a transaction within this many blocks."""
TOO_MANY_BAD_BLOCKS = "too-many-bad-blocks"
"""The 429 of a client whose blocks were refused too often (the BAD_BLOCKS quota)."""
UNCOUNTED_REFUSALS = frozenset({"duplicate-block", "low-work"})
"""Refused blocks that an honest miner sends too (a retry, a block the chain outran), answered
before any transaction is decoded: not counted against the client."""


def _ledger(request: web.Request) -> Ledger:
    return request.app[LEDGER]


def _now(request: web.Request) -> int:
    return int(request.app[CLOCK]())


def _log_rejection(request: web.Request, kind: str, object_id: str, exc: Exception) -> None:
    reason = str(getattr(exc, "reason", "error"))
    message = str(getattr(exc, "message", exc))
    source = request.remote or "?"
    _ledger(request).log_rejection(_now(request), kind, object_id, reason, message, source)
    logger.info("rejected kind=%s id=%s reason=%s source=%s", kind, object_id[:16], reason, source)


# -- the tutorial's endpoints -------------------------------------------------------------------


PROTOCOL_DOC = "docs/protocol.md §4"
CLI_SEND = "pybtc wallet send RECIPIENT AMOUNT"


def easy_ways(settings: Settings) -> str:
    """The ways to make a transaction that sign it for you, for the tutorial's reader."""
    url = settings.browser_wallet_url
    browser = f"the browser wallet at {url}" if url else "this node's browser wallet"
    return f"`{CLI_SEND}` or {browser}"


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """The tutorial's greeting, and how a transaction is made now (signed)."""
    settings = request.app[SETTINGS]
    return web.json_response(
        {
            "message": "Welcome to the pyBTC ledger API. Use /chain to view the chain, "
            "/mine to mine a block, or /transactions/new to create a transaction. "
            f"Transactions are signed ({PROTOCOL_DOC}); the easy ways sign for you: "
            f"{easy_ways(settings)}.",
            "network": settings.network,
            "docs": "/openapi.yaml",
            "send": {
                "cli": CLI_SEND,
                "browser_wallet": settings.browser_wallet_url,
                "protocol": PROTOCOL_DOC,
            },
        }
    )


@routes.get("/chain")
async def chain(request: web.Request) -> web.Response:
    """The tutorial's `{"chain", "length"}`; `?start=&limit=` pages, `?format=headers`."""
    ledger = _ledger(request)
    height = ledger.height
    start = query_int(request, "start", 1, low=1, high=2**62)
    limit = query_int(request, "limit", height, low=1, high=2**62)
    form = request.query.get("format", "full")
    if form == "headers":
        return web.json_response(
            {"chain": ledger.store.main_headers(start, limit), "length": height}
        )
    if form != "full":
        raise ServiceError(400, "bad-query", "format is 'full' or 'headers'")
    # The blocks as stored (json.dumps of Block.to_dict() when they were accepted), joined
    # without parsing: what json_response would write, at a fraction of the cost.
    bodies = ledger.store.main_block_bodies(start, limit)
    return web.Response(
        text=f'{{"chain": [{", ".join(bodies)}], "length": {height}}}',
        content_type="application/json",
    )


@routes.post("/transactions/new")
async def transactions_new(request: web.Request) -> web.Response:
    """Admit a signed transaction; 201 with the tutorial's message. Idempotent by txid."""
    body: dict[str, Any] = {}
    try:
        body = await read_json_object(request)
        tx = _signed_transaction(body, request.app[SETTINGS])
        result = _ledger(request).submit_transaction(tx, _now(request))
    except (ValidationError, ServiceError) as exc:
        _log_rejection(request, "tx", _object_id(body, "txid"), exc)
        raise
    ledger = _ledger(request)
    if result.is_new:
        await request.app[NETWORK].transaction_accepted(result)
    place = _mempool_place(ledger, tx.txid)
    wait = place["blocks_to_wait"] or 1
    return web.json_response(
        {
            "message": f"Transaction will be added to Block {ledger.height + wait}",
            "txid": tx.txid,
            "status": "pending",
            "new": result.is_new,
        }
        | place,
        status=201,
    )


def _mempool_place(ledger: Ledger, txid: str) -> dict[str, int | None]:
    """Where a pending transaction stands in mining order: its place (1 = mined first) and
    the projected block that takes it (1 = the next)."""
    view = ledger.mempool_view()
    return {"mempool_position": view.position(txid), "blocks_to_wait": view.block(txid)}


def _signed_transaction(body: dict[str, Any], settings: Settings) -> Transaction:
    """The transaction in a request body; a relay's `"type": "sharing"` is allowed and dropped."""
    fields = dict(body)
    relay = fields.pop("type", None)
    if relay not in (None, "sharing"):
        raise ServiceError(400, "bad-type", 'type may only be "sharing" (a relay between peers)')
    if "signature" not in fields and "public_key" not in fields:
        raise ServiceError(
            400,
            "signature-required",
            "pyBTC transactions are signed: send sender, recipient, amount, fee, nonce, "
            f"timestamp, public_key and signature (see {PROTOCOL_DOC}); the tutorial's "
            "unsigned {sender, recipient, amount} cannot move coins. The easy ways sign for "
            f"you: {easy_ways(settings)}",
        )
    return Transaction.from_dict(fields)


def _object_id(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    return value[:64] if isinstance(value, str) else "-"


# -- node to node (the tutorial's last chapter) -------------------------------------------------


@routes.post("/nodes/register")
async def nodes_register(request: web.Request) -> web.Response:
    """`{"nodes": url}` or `{"nodes": [urls]}`: handshake, add, register back, spread."""
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    body = await read_json_object(request)
    if "nodes" not in body:
        raise ServiceError(400, "missing-field", "Error: Please supply a valid list of nodes")
    network = request.app[NETWORK]
    counted = not settings.operator_token  # with a token, only the operator gets here
    outcome = await network.register(body["nodes"], client_key(request), counted=counted)
    message = "New nodes have been added" if outcome.added else "Already Registered Node"
    return web.json_response(
        {
            "message": message,
            "total_nodes": network.book.urls(),
            "added": outcome.added,
            "rejected": outcome.rejected,
        },
        status=201,
    )


@routes.get("/nodes")
async def nodes(request: web.Request) -> web.Response:
    """This node's peers with their health and last known tips, and the latest dropped."""
    network = request.app[NETWORK]
    book = network.book
    return web.json_response(
        {"self": network.self_url, "peers": book.describe(), "dropped": list(book.dropped)}
    )


@routes.get("/nodes/resolve")
@routes.post("/nodes/resolve")
async def nodes_resolve(request: web.Request) -> web.Response:
    """Consensus: with `miner_node` (JSON body or query), sync from the announcing node;
    without, with every peer. Answers in the tutorial's words, within the sync deadline."""
    announcement: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        raw = await request.read()
        if raw:  # no body, or JSON: a blank one is malformed, as the document says
            parsed = parse_json(raw)
            if not isinstance(parsed, dict):
                raise ServiceError(400, "bad-type", "the announcement must be a JSON object")
            announcement |= parsed
    network = request.app[NETWORK]
    ledger = _ledger(request)
    old_tip = ledger.tip_hash
    peer_error = None
    finished = True
    if "miner_node" in announcement:
        url = normalize_peer_url(announcement["miner_node"])
        network.admit_announcement(url, client_key(request))
        try:
            await network.policy.check_connect(url)
            finished = await network.announced(url) is not None
        except PeerError as exc:
            peer_error = exc.message
    else:
        await network.resolve()
    replaced = ledger.tip_hash != old_tip
    tip = ledger.tip_header().to_dict()
    body: dict[str, Any] = (
        {"message": "Our chain was replaced", "new_chain": [tip]}
        if replaced
        else {"message": "Our chain is authoritative", "chain": [tip]}
    )
    body["length"] = ledger.height
    if peer_error is not None:
        body["peer_error"] = peer_error
    if not finished:
        body["syncing"] = True
    return web.json_response(body)


@routes.get("/mine")
async def mine(request: web.Request) -> web.Response:
    """The tutorial's "mine one block now": this node's miner service mines it; the answer
    keeps the tutorial's shape once the block is connected on this ledger's main chain."""
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    block = await request.app[MINE_DESK].mine_one(settings.mine_timeout)
    return web.json_response(
        {
            "message": "new block found",
            "index": block.index,
            "transactions": [tx.to_dict() for tx in block.transactions],
            "nonce": block.header.nonce,
            "previous_hash": block.previous_hash,
            "hash": block.hash,
        }
    )


# -- REST: blocks, transactions, addresses ------------------------------------------------------


def _block_view(ledger: Ledger, block: Block, invalid: str | None) -> dict[str, Any]:
    on_main = ledger.store.is_main(block.hash, block.index)
    tip_height = ledger.height
    meta = ledger.store.block_meta(block.hash)
    next_hash = ledger.store.main_hash(block.index + 1) if on_main else None
    return {
        "block": block.to_dict(),
        "height": block.index,
        "in_best_chain": on_main,
        "confirmations": tip_height - block.index + 1 if on_main else 0,
        "chain_work": f"{meta[1]:064x}" if meta else None,
        "next_hash": next_hash,
        "invalid_reason": invalid,
    } | ledger.store.block_summary(block.hash)


@routes.get("/blocks")
async def blocks(request: web.Request) -> web.Response:
    """Main-chain block summaries, newest first: `?before=<height>&limit=`."""
    ledger = _ledger(request)
    height = ledger.height
    before = query_int(request, "before", height + 1, low=1, high=2**62)
    limit = query_int(request, "limit", 20, low=1, high=MAX_PAGE)
    top = min(before - 1, height)
    items = ledger.store.main_summaries_json(max(1, top - limit + 1), top) if top >= 1 else []
    # JSON that SQLite wrote (see main_summaries_json), joined without parsing, as /chain does.
    return web.Response(
        text=f'{{"height": {height}, "blocks": [{", ".join(items)}]}}',
        content_type="application/json",
    )


@routes.get("/blocks/tree")
async def block_tree(request: web.Request) -> web.Response:
    """Every known block, stale branches included, at heights `?from=` to `?to=` (at most 100
    heights; by default the last 30 up to the tip)."""
    ledger = _ledger(request)
    tip = ledger.height
    high = query_int(request, "to", tip + 10, low=1, high=2**62)
    low = query_int(request, "from", max(1, high - 29), low=1, high=2**62)
    if high < low or high - low >= 100:
        raise ServiceError(400, "bad-query", "from..to spans 1 to 100 heights")
    return web.json_response(
        {"tip": ledger.tip_hash, "height": tip, "blocks": ledger.store.blocks_between(low, high)}
    )


@routes.get("/blocks/height/{height}")
async def block_by_height(request: web.Request) -> web.Response:
    raw = request.match_info["height"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ServiceError(400, "bad-query", "height must be a whole number")
    ledger = _ledger(request)
    block_hash = ledger.store.main_hash(int(raw))
    if block_hash is None:
        raise ServiceError(404, "not-found", f"no block at height {raw} (tip is {ledger.height})")
    stored = ledger.store.get_block(block_hash)
    assert stored is not None
    return web.json_response(_block_view(ledger, stored.block, stored.invalid_reason))


def _hex_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    try:
        return check_hex(name, value, 32)
    except ValidationError as exc:
        raise ServiceError(400, str(exc.reason), exc.message) from None


@routes.get("/blocks/{hash}")
async def block_by_hash(request: web.Request) -> web.Response:
    ledger = _ledger(request)
    stored = ledger.store.get_block(_hex_id(request, "hash"))
    if stored is None:
        raise ServiceError(404, "not-found", "no block with that hash")
    return web.json_response(_block_view(ledger, stored.block, stored.invalid_reason))


@routes.get("/tx/{txid}")
async def transaction(request: web.Request) -> web.Response:
    """A transaction and its status: confirmed (with confirmations), pending (with its place in
    the mempool) or dropped by a tip change; `fate` tells what the last reorg did to it."""
    txid = _hex_id(request, "txid")
    ledger = _ledger(request)
    fate = ledger.store.tx_fate(txid)
    body = fate.pop("transaction") if fate else None
    where = ledger.store.chain_tx(txid)
    if where is not None:
        block_hash, height, position = where
        stored = ledger.store.get_block(block_hash)
        assert stored is not None
        view = {
            "transaction": stored.block.transactions[position].to_dict(),
            "status": "confirmed",
            "block_hash": block_hash,
            "height": height,
            "confirmations": ledger.height - height + 1,
        }
    elif (pending := ledger.store.mempool_get(txid)) is not None:
        view = {
            "transaction": pending.tx.to_dict(),
            "status": "pending",
            "received_at": pending.received_at,
        } | _mempool_place(ledger, txid)
    elif fate is not None and fate["fate"] == "dropped":
        view = {"transaction": body, "status": "dropped"}
    else:
        raise ServiceError(404, "not-found", "no transaction with that id in the chain or mempool")
    return web.json_response(view | {"fate": fate})


def _address(request: web.Request) -> str:
    address = request.match_info["address"]
    decode_address(address)  # a mistyped address is a 400 bad-address with what is wrong
    return address


@routes.get("/address/{address}")
async def address_info(request: web.Request) -> web.Response:
    """Confirmed, unconfirmed and spendable balance, pending sums, confirmed and next nonce."""
    address = _address(request)
    return web.json_response(address_summary(_ledger(request), address))


@routes.get("/address/{address}/history")
async def address_history(request: web.Request) -> web.Response:
    """Pending entries, then confirmed ones newest first, each with its net effect (delta),
    parties and the balance after it; and the address's latest dropped transactions."""
    address = _address(request)
    offset = query_int(request, "offset", 0, low=0, high=2**62)
    limit = query_int(request, "limit", 25, low=1, high=MAX_PAGE)
    return web.json_response(history_page(_ledger(request), address, offset, limit))


@routes.get("/mempool")
async def mempool(request: web.Request) -> web.Response:
    """Pending transactions in mining order (`pybtc.mempool.mining_order`), each with its
    position (1 = mined first) and projected block (1 = the next)."""
    ledger = _ledger(request)
    offset = query_int(request, "offset", 0, low=0, high=2**62)
    limit = query_int(request, "limit", 100, low=1, high=MAX_PAGE)
    view = ledger.mempool_view()
    page = view.ordered[offset : offset + limit]
    items = [
        tx.to_dict()
        | {
            "position": offset + i + 1,
            "block": projected_block(offset + i + 1, view.capacity),
            "received_at": entry.received_at,
        }
        for i, (entry, tx) in enumerate(zip(page, ledger.pending_transactions(page), strict=True))
    ]
    return web.json_response(
        {"count": len(view.ordered), "capacity": view.capacity, "transactions": items}
    )


@routes.get("/mempool/blocks")
async def mempool_blocks(request: web.Request) -> web.Response:
    """The next blocks the pool would fill in mining order (at most PROJECTED_BLOCKS), with
    their fee figures, and how much lies beyond them."""
    view = _ledger(request).mempool_view()
    shown = view.summaries[:PROJECTED_BLOCKS]
    shown_txs = sum(s.tx_count for s in shown)
    return web.json_response(
        {
            "count": len(view.ordered),
            "capacity": view.capacity,
            "blocks": [asdict(s) for s in shown],
            "more_blocks": len(view.summaries) - len(shown),
            "more_transactions": len(view.ordered) - shown_txs,
        }
    )


@routes.get("/fees")
async def fees(request: web.Request) -> web.Response:
    """Fees a new transaction (from a sender with nothing pending) needs: the relay minimum,
    and what lands it in the next block or within the next ECONOMY_BLOCKS."""
    ledger = _ledger(request)
    view = ledger.mempool_view()
    minimum = ledger.policy.min_fee
    return web.json_response(
        {
            "minimum": minimum,
            "next_block": view.fee_to_reach(1, minimum),
            "economy": view.fee_to_reach(ECONOMY_BLOCKS, minimum),
            "capacity": view.capacity,
        }
    )


@routes.get("/status")
async def status(request: web.Request) -> web.Response:
    ledger = _ledger(request)
    tip = ledger.tip_header()
    params = ledger.params
    return web.json_response(
        {
            "network": params.name,
            "network_id": params.network_id,
            "genesis": params.genesis.hash,
            "tip": tip.hash,
            "height": tip.index,
            "tip_time": tip.timestamp,
            "chain_work": f"{ledger.chain_work():064x}",
            "bits": tip.bits,
            "difficulty": ledger.difficulty(),
            "mempool_size": ledger.store.mempool_count(),
            "node_id": request.app[SETTINGS].origin,
            "url": request.app[SETTINGS].ledger_public_url,
        }
    )


@routes.get("/rejections")
async def rejections(request: web.Request) -> web.Response:
    """The latest refusals, newest first; `?id=` keeps only those of one txid or block hash."""
    limit = query_int(request, "limit", 50, low=1, high=MAX_PAGE)
    object_id = request.query.get("id")
    if object_id is not None:
        try:
            check_hex("id", object_id, 32)
        except ValidationError as exc:
            raise ServiceError(400, str(exc.reason), exc.message) from None
    return web.json_response({"rejections": _ledger(request).store.rejections(limit, object_id)})


@routes.get("/reorgs")
async def reorgs(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 50, low=1, high=MAX_PAGE)
    return web.json_response({"reorgs": _ledger(request).store.reorgs(limit)})


# -- mining (used by the miner service) ---------------------------------------------------------


@routes.get("/mining/template")
async def mining_template(request: web.Request) -> web.Response:
    """An unmined block for `?address=` with the best-fee transactions and the right bits."""
    address = request.query.get("address", "")
    decode_address(address)
    ledger = _ledger(request)
    block = ledger.template(address, _now(request))
    return web.json_response(
        {
            "block": block.to_dict(),
            "target": f"{block.header.bits:08x}",
            "height": block.index,
            "previous_hash": block.previous_hash,
        }
    )


@routes.post("/mining/submit")
async def mining_submit(request: web.Request) -> web.Response:
    """A solved block: validated, stored, connected if it has the most work, announced.

    The header is checked before the transactions are even decoded, and a client whose blocks
    keep being refused is answered 429 `too-many-bad-blocks` for a while (see BAD_BLOCKS)."""
    quota = request.app[BAD_BLOCKS]
    client = client_key(request)
    quota.check(client)
    ledger, now = _ledger(request), _now(request)
    body: dict[str, Any] = {}
    size = request.content_length or 0
    remembered = ledger.refused.hits
    try:
        body = await read_json_object(request)
        size = len(await request.read())  # read already: the same bytes again
        # From here to the answer nothing is awaited: no other request can move the count.
        remembered = ledger.refused.hits
        raw_txs = body.get("transactions")
        work = None
        if isinstance(raw_txs, list):  # else from_dict says what is wrong with it
            work = ledger.check_header(header_of_block(body), len(raw_txs), now)
        block = Block.from_dict(body)  # nothing is awaited from the header check to the store
        result = ledger.submit_block(block, now, header_work=work)
    except (ValidationError, ServiceError) as exc:
        _log_rejection(request, "block", _object_id(body, "hash"), exc)
        if exc.reason not in UNCOUNTED_REFUSALS:  # one answered from memory costs 1
            fresh = ledger.refused.hits == remembered
            quota.charge(client, 1 + (size // COST_BYTES if fresh else 0))
        raise
    await request.app[NETWORK].block_accepted(result)
    change = result.tip_change
    return web.json_response(
        {
            "hash": block.hash,
            "height": block.index,
            "is_tip": result.is_tip,
            "reorg_depth": len(change.disconnected) if change else 0,
        },
        status=201,
    )


@routes.get("/openapi.yaml")
async def openapi(request: web.Request) -> web.Response:
    text = files("services.node").joinpath("openapi.yaml").read_text()
    return web.Response(text=text, content_type="application/yaml")

"""Explorer pages: each one a few indexed reads from the ledger, rendered by a template.

Every page's cost depends on its page size, not on the chain's length: the ledger answers by
height, hash, txid or address from its indexes, and lists are paginated.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from pybtc import AddressError, decode_address
from pybtc.pow import block_work
from services.common.ledger_client import LedgerClient
from services.common.pages import BROADCASTER, LEDGER, SETTINGS
from services.common.web import ServiceError, query_int
from services.explorer.charts import Chart, block_time_chart, difficulty_chart

routes = web.RouteTableDef()

PAGE = 20
DASHBOARD_CHART = 100  # blocks drawn by the dashboard's charts
CHART_MAX = 499  # the ledger lists at most 500 blocks at once: N blocks and one parent
CHART_CHOICES = (50, 100, 200, 499)
TREE_SPAN = 30  # heights the block tree draws at once
CHAIN_EVENTS = "tip reorg resync"  # for pages that show no mempool state (a tx event: no re-read)
HEX64 = re.compile(r"[0-9a-f]{64}")


def _ledger(request: web.Request) -> LedgerClient:
    return request.app[LEDGER]


async def _get_or_404(request: web.Request, path: str, missing: str, **params: str) -> Any:
    """The ledger's answer, or a 404 page saying `missing`."""
    status, body = await _ledger(request).request("GET", path, params=params or None)
    if status == 404:
        raise ServiceError(404, "not-found", missing)
    if status != 200:
        message = body.get("error", "") if isinstance(body, dict) else ""
        raise ServiceError(400 if status < 500 else 502, "ledger-refused", message or missing)
    return body


async def _optional(request: web.Request, path: str, **params: str) -> Any:
    """The ledger's answer, or None when it has none (an older ledger without that path)."""
    status, body = await _ledger(request).request("GET", path, params=params or None)
    return body if status == 200 else None


@routes.get("/")
@aiohttp_jinja2.template("dashboard.html")
async def dashboard(request: web.Request) -> dict[str, Any]:
    """Height, difficulty, work, mempool, peers, the latest blocks and transactions."""
    ledger = _ledger(request)
    status = await ledger.get("/status")
    recent = (await ledger.get("/blocks", limit=str(DASHBOARD_CHART + 1)))["blocks"]
    mempool = await ledger.get("/mempool", limit="10")
    peers = (await ledger.get("/nodes"))["peers"]
    return {
        "page": "dashboard",
        "status": status,
        "fees": await _optional(request, "/fees"),
        "blocks": recent[:10],
        "mempool": mempool,
        "peers": peers,
        "hash_rate": _hash_rate_estimate(recent[:10]),
        "charts": _charts(request, recent),
        "chart_blocks": DASHBOARD_CHART,
    }


def _charts(request: web.Request, newest_first: list[dict[str, Any]]) -> list[Chart]:
    params = request.app[SETTINGS].params
    oldest_first = list(reversed(newest_first))
    return [
        difficulty_chart(oldest_first[1:], params.pow_limit),
        block_time_chart(oldest_first, params.target_block_time),
    ]


@routes.get("/charts")
@aiohttp_jinja2.template("charts.html")
async def charts(request: web.Request) -> dict[str, Any]:
    """Difficulty and block time over the latest `?blocks=` blocks (10 to 499)."""
    count = query_int(request, "blocks", 200, low=10, high=CHART_MAX)
    newest_first = (await _ledger(request).get("/blocks", limit=str(count + 1)))["blocks"]
    return {
        "page": "charts",
        "events": CHAIN_EVENTS,
        "charts": _charts(request, newest_first),
        "count": count,
        "choices": CHART_CHOICES,
    }


def _hash_rate_estimate(blocks: list[dict[str, Any]]) -> float | None:
    """Expected hashes per block times blocks per second, over the latest mined blocks (genesis
    has a fixed, old timestamp and says nothing about today's miners)."""
    blocks = [b for b in blocks if b["index"] > 1]
    if len(blocks) < 2:
        return None
    elapsed = int(blocks[0]["timestamp"]) - int(blocks[-1]["timestamp"])
    if elapsed <= 0:
        return None
    return float(block_work(int(blocks[0]["bits"])) * (len(blocks) - 1) / elapsed)


@routes.get("/blocks")
@aiohttp_jinja2.template("blocks.html")
async def blocks(request: web.Request) -> dict[str, Any]:
    """Main-chain blocks, newest first, `?before=<height>`."""
    before = query_int(request, "before", 2**62, low=2, high=2**62)
    params = {"limit": str(PAGE)} | ({"before": str(before)} if before < 2**62 else {})
    body = await _ledger(request).get("/blocks", **params)
    items = body["blocks"]
    older = items[-1]["index"] if items and items[-1]["index"] > 1 else None
    newer = None if before >= body["height"] + 1 else min(before + PAGE, body["height"] + 1)
    return {
        "page": "blocks",
        "events": CHAIN_EVENTS,
        "blocks": items,
        "height": body["height"],
        "older": older,
        "newer": newer,
    }


@routes.get("/block/{hash}")
@aiohttp_jinja2.template("block.html")
async def block(request: web.Request) -> dict[str, Any]:
    block_hash = request.match_info["hash"]
    if not HEX64.fullmatch(block_hash):
        raise ServiceError(400, "bad-hash", "A block hash is 64 lowercase hexadecimal digits.")
    view = await _get_or_404(request, f"/blocks/{block_hash}", "No block with that hash here.")
    return {
        "page": "blocks",
        "events": CHAIN_EVENTS,
        "view": view,
        "b": view["block"],
        "facts": block_facts(view),
    }


def block_facts(view: dict[str, Any]) -> dict[str, Any]:
    """Miner, fee total and size: the ledger's figures where it gives them, else (miner, fees)
    read from the block's own transactions."""
    block = view["block"]
    txs = block.get("transactions", [])
    coinbase = next((t for t in txs if t.get("sender") == "0"), None)
    miner = view.get("miner", block.get("miner"))
    if miner is None and coinbase is not None:
        miner = coinbase.get("recipient")
    fee_total = view.get("fee_total", block.get("fee_total"))
    if fee_total is None:
        fee_total = sum(int(t.get("fee", 0)) for t in txs if t.get("sender") != "0")
    return {
        "miner": miner,
        "fee_total": fee_total,
        "size": view.get("size", block.get("size")),
        "tx_count": len(txs),
    }


@routes.get("/height/{height}")
async def height(request: web.Request) -> web.Response:
    raw = request.match_info["height"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ServiceError(400, "bad-query", "A height is a whole number.")
    view = await _get_or_404(
        request, f"/blocks/height/{int(raw)}", f"This node has no block at height {int(raw)}."
    )
    raise web.HTTPFound(f"/block/{view['block']['hash']}")


@routes.get("/tx/{txid}")
@aiohttp_jinja2.template("tx.html")
async def transaction(request: web.Request) -> dict[str, Any]:
    txid = request.match_info["txid"]
    if not HEX64.fullmatch(txid):
        raise ServiceError(400, "bad-txid", "A transaction id is 64 lowercase hexadecimal digits.")
    status, view = await _ledger(request).request("GET", f"/tx/{txid}")
    if status == 200:
        return {"page": "tx", "view": view, "tx": view["transaction"]}
    if status != 404:
        raise ServiceError(502, "ledger-refused", "The ledger could not answer for that id.")
    refusals = await _refusals_of(request, txid)
    if not refusals:
        raise ServiceError(
            404, "not-found", "This node knows no transaction with that id, and refused none."
        )
    return {"page": "tx", "view": None, "tx": None, "txid": txid, "refusals": refusals}


async def _refusals_of(request: web.Request, txid: str) -> list[dict[str, Any]]:
    """What this node refused under that id, newest first (`GET /rejections?id=`; an older
    ledger ignores `id`, so the list is filtered here too)."""
    body = await _optional(request, "/rejections", id=txid, limit=str(PAGE))
    entries = body.get("rejections", []) if isinstance(body, dict) else []
    return [r for r in entries if r.get("id") == txid and r.get("kind") != "block"]


@routes.get("/address/{address}")
@aiohttp_jinja2.template("address.html")
async def address(request: web.Request) -> dict[str, Any]:
    text = request.match_info["address"]
    try:
        decode_address(text)
    except AddressError as exc:
        raise ServiceError(
            400, "bad-address", f"That is not a pyBTC address: {exc.message}."
        ) from None
    offset = query_int(request, "offset", 0, low=0, high=2**40)
    ledger = _ledger(request)
    info = await ledger.get(f"/address/{text}")
    history = await ledger.get(f"/address/{text}/history", offset=str(offset), limit=str(PAGE))
    return {
        "page": "address",
        "info": info,
        "history": history,
        "older": offset + PAGE if offset + PAGE < history["total"] else None,
        "newer": max(0, offset - PAGE) if offset else None,
    }


@routes.get("/mempool")
@aiohttp_jinja2.template("mempool.html")
async def mempool(request: web.Request) -> dict[str, Any]:
    offset = query_int(request, "offset", 0, low=0, high=2**40)
    ledger = _ledger(request)
    size = PAGE * 5
    body = await ledger.get("/mempool", offset=str(offset), limit=str(size))
    rejections = (await ledger.get("/rejections", limit=str(PAGE)))["rejections"]
    return {
        "page": "mempool",
        "mempool": body,
        "projected": await _optional(request, "/mempool/blocks"),
        "offset": offset,
        "rejections": rejections,
        "newer": max(0, offset - size) if offset else None,
        "later": offset + size if offset + size < body["count"] else None,
    }


@routes.get("/network")
@aiohttp_jinja2.template("network.html")
async def network(request: web.Request) -> dict[str, Any]:
    ledger = _ledger(request)
    status = await ledger.get("/status")
    nodes = await ledger.get("/nodes")
    # Peers' tips change without an event of ours: the page polls as well (every 5 s).
    return {
        "page": "network",
        "events": CHAIN_EVENTS,
        "status": status,
        "nodes": nodes,
        "poll": 5000,
    }


@routes.get("/search")
async def search(request: web.Request) -> web.Response:
    """One box: a height, a block hash, a txid, or an address (a typo is explained)."""
    query = request.query.get("q", "").strip()
    if not query:
        raise web.HTTPFound("/")
    if query.isascii() and query.isdigit() and len(query) <= 18:
        raise web.HTTPFound(f"/height/{int(query)}")
    lowered = query.lower()
    if HEX64.fullmatch(lowered):
        ledger = _ledger(request)
        if (await ledger.request("GET", f"/blocks/{lowered}"))[0] == 200:
            raise web.HTTPFound(f"/block/{lowered}")
        if (await ledger.request("GET", f"/tx/{lowered}"))[0] == 200:
            raise web.HTTPFound(f"/tx/{lowered}")
        raise ServiceError(404, "not-found", "No block or transaction has that hash here.")
    try:
        decode_address(query)
    except AddressError as exc:
        if len(query) >= 25 and query[:1] == "P":
            raise ServiceError(
                400, "bad-address", f"That looks like an address, but {exc.message}."
            ) from None
        raise ServiceError(
            404,
            "not-found",
            "Search takes a block height, a block hash, a transaction id or an address.",
        ) from None
    raise web.HTTPFound(f"/address/{query}")


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    return await request.app[BROADCASTER].stream(request)


@routes.get("/api/summary")
async def summary(request: web.Request) -> web.Response:
    """What the dashboard's live script redraws: height, mempool size, latest blocks."""
    ledger = _ledger(request)
    status = await ledger.get("/status")
    blocks = (await ledger.get("/blocks", limit="10"))["blocks"]
    return web.json_response(
        {"height": status["height"], "mempool_size": status["mempool_size"], "blocks": blocks}
    )


@routes.get("/forks")
@aiohttp_jinja2.template("forks.html")
async def forks(request: web.Request) -> dict[str, Any]:
    """The block tree (stale branches included) over TREE_SPAN heights up to `?to=` (by
    default the tip and just above it), and every reorg this node made."""
    ledger = _ledger(request)
    to = query_int(request, "to", 0, low=1, high=2**62) if "to" in request.query else None
    params = {"to": str(to), "from": str(max(1, to - TREE_SPAN + 1))} if to else {}
    tree = await ledger.get("/blocks/tree", **params)
    reorgs = (await ledger.get("/reorgs", limit="20"))["reorgs"]
    heights = [b["index"] for b in tree["blocks"]]
    low = min(heights) if heights else 1
    top = to if to is not None else tree["height"]
    return {
        "page": "forks",
        "events": CHAIN_EVENTS,
        "tree": tree,
        "drawing": layout_tree(tree["blocks"]),
        "reorgs": reorgs,
        "older": low - 1 if low > 1 else None,
        "newer": min(top + TREE_SPAN, tree["height"]) if to is not None else None,
        "at_tip": to is None or to >= tree["height"],
    }


def layout_tree(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Positions for an SVG: one column per height, newest on the left (so the tip shows
    without scrolling, however narrow the screen), the best chain on the first row, each stale
    branch on a row of its own."""
    if not blocks:
        return {"nodes": [], "edges": [], "width": 0, "height": 0, "low": 0, "high": 0}
    low = min(b["index"] for b in blocks)
    high = max(b["index"] for b in blocks)
    lane_of: dict[str, int] = {}
    lane_end: dict[int, str] = {}  # lane -> hash of its last block
    for b in blocks:  # height order, first seen first
        if b["in_best_chain"]:
            lane = 0
        elif lane_end.get(lane_of.get(b["previous_hash"], -1)) == b["previous_hash"] and (
            lane_of.get(b["previous_hash"], 0) > 0
        ):
            lane = lane_of[b["previous_hash"]]
        else:
            lane = max([0, *lane_end]) + 1
        lane_of[b["hash"]] = lane
        lane_end[lane] = b["hash"]
    step_x, step_y = 72, 56
    nodes = [
        {
            "x": 40 + (high - b["index"]) * step_x,
            "y": 30 + lane_of[b["hash"]] * step_y,
            "hash": b["hash"],
            "height": b["index"],
            "main": b["in_best_chain"],
            "invalid": b["invalid_reason"],
        }
        for b in blocks
    ]
    where = {n["hash"]: n for n in nodes}
    edges = [
        {
            "x1": where[b["previous_hash"]]["x"] - 14,
            "y1": where[b["previous_hash"]]["y"],
            "x2": where[b["hash"]]["x"] + 14,
            "y2": where[b["hash"]]["y"],
        }
        for b in blocks
        if b["previous_hash"] in where
    ]
    width = 80 + (high - low) * step_x
    return {
        "nodes": nodes,
        "edges": edges,
        "width": width,
        "height": 60 + max(lane_of.values()) * step_y,
        "low": low,
        "high": high,
    }

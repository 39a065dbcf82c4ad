"""Wallet pages and the JSON API the browser wallet uses (docs/wallet.md).

Nothing here ever holds a private key or a passphrase: keys are made, encrypted and used in
the browser (static/pybtc-crypto.js); this service reads the ledger, passes on transactions
that are already signed, and pays the faucet from the node's own key.
"""

from __future__ import annotations

import io
import logging
import urllib.parse
from typing import Any

import aiohttp_jinja2
import segno
from aiohttp import web

from pybtc import COIN, AddressError, Transaction, address_from_public_key, decode_address
from pybtc.errors import ValidationError
from services.common.ledger_client import LedgerClient
from services.common.limits import LOOPBACK_CLIENT, client_key, require_operator
from services.common.pages import BROADCASTER, LEDGER, SETTINGS, is_hash
from services.common.web import ServiceError, query_int, read_json_object
from services.wallet.csrf import csrf_token
from services.wallet.faucet import Faucet, RateLimitedError
from services.wallet.payreq import PaymentRequest, PaymentRequestError, coins_text, make

logger = logging.getLogger(__name__)

FAUCET = web.AppKey("faucet", Faucet)
routes = web.RouteTableDef()

HISTORY_PAGE = 25
MAX_PENDING_LOOKUPS = 25


def _ledger(request: web.Request) -> LedgerClient:
    return request.app[LEDGER]


def _address(text: str) -> str:
    try:
        decode_address(text)
    except AddressError as exc:
        raise ServiceError(
            400, "bad-address", f"that is not a pyBTC address: {exc.message}"
        ) from None
    return text


def _page(request: web.Request, page: str, **context: Any) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    return {
        "page": page,
        "network": settings.network,
        "csrf": csrf_token(request),
        "explorer_url": settings.explorer_url,
        **context,
    }


# -- pages ------------------------------------------------------------------------------------


@routes.get("/")
@aiohttp_jinja2.template("wallet.html")
async def home(request: web.Request) -> dict[str, Any]:
    """The browser wallet: create, unlock or import; then balance, send, receive."""
    return _page(request, "wallet")


@routes.get("/watch")
async def watch_form(request: web.Request) -> web.Response:
    """The tutorial's "log in with a wallet id", now a watch-only view of any address."""
    address = request.query.get("address", "").strip()
    if not address:
        raise web.HTTPFound("/")
    raise web.HTTPFound(f"/address/{_address(address)}")


@routes.get("/address/{address}")
@aiohttp_jinja2.template("watch.html")
async def watch(request: web.Request) -> dict[str, Any]:
    address = _address(request.match_info["address"])
    return _page(request, "watch", address=address)


# -- API --------------------------------------------------------------------------------------


@routes.get("/api/csrf")
async def api_csrf(request: web.Request) -> web.Response:
    return web.json_response({"token": csrf_token(request)})


@routes.get("/api/params")
async def api_params(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    faucet = request.app[FAUCET]
    return web.json_response(
        {
            "network": settings.network,
            "network_id": settings.params.network_id,
            "min_fee": settings.min_fee,
            "default_fee": settings.min_fee,
            "coin": COIN,
            "explorer_url": settings.explorer_url,
            "faucet": {
                # a browser holds no operator token: an operator-only faucet is not offered
                "enabled": faucet.enabled and not settings.operator_token,
                "operator_only": bool(settings.operator_token),
                "amount": faucet.amount,
            },
        }
    )


ENTRY_FIELDS = (
    "txid",
    "delta",
    "sender",
    "recipient",
    "amount",
    "fee",
    "timestamp",
    "counterparty",
    "fate",
)
CONFIRMED_FIELDS = ("height", "confirmations", "block_time", "balance_after")


def _fields(item: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: item[name] for name in names if name in item}


@routes.get("/api/address/{address}")
async def api_address(request: web.Request) -> web.Response:
    """Balances (`spendable`: what can be sent now), nonce and history with each entry's
    status, in one answer: on the first page, the dropped ones, then pending, then confirmed."""
    address = _address(request.match_info["address"])
    offset = query_int(request, "offset", 0, low=0, high=2**40)
    ledger = _ledger(request)
    info = await ledger.get(f"/address/{address}")
    history = await ledger.get(
        f"/address/{address}/history", offset=str(offset), limit=str(HISTORY_PAGE)
    )
    entries: list[dict[str, Any]] = []
    if offset == 0:  # what happened lately is on page 1
        for item in history.get("dropped", []):
            fate = {"fate": item["fate"], "reason": item.get("reason"), "at": item.get("at")}
            entries.append(_fields(item, ENTRY_FIELDS) | {"status": "dropped", "fate": fate})
    pending = history["pending"][:MAX_PENDING_LOOKUPS] if offset == 0 else []
    for item in pending:
        entry = _fields(item, ENTRY_FIELDS) | {"status": "pending"}
        status, view = await ledger.request("GET", f"/tx/{item['txid']}")
        if status == 200 and view["status"] == "pending":
            entry |= _fields(view, ("mempool_position", "blocks_to_wait", "fate"))
        entries.append(entry)
    for item in history["confirmed"]:
        entries.append(_fields(item, ENTRY_FIELDS + CONFIRMED_FIELDS) | {"status": "confirmed"})
    return web.json_response(
        {
            "address": address,
            "spendable": info["spendable"],
            "balance": info["balance"],
            "unconfirmed_balance": info["unconfirmed_balance"],
            "pending_in": info["pending_in"],
            "pending_out": info["pending_out"],
            "nonce": info["nonce"],
            "next_nonce": info["next_nonce"],
            "history": entries,
            "history_total": history["total"],
            "offset": offset,
            "page_size": HISTORY_PAGE,
        }
    )


@routes.get("/api/tx/{txid}")
async def api_tx(request: web.Request) -> web.Response:
    """A transaction's status (pending, confirmed, dropped with its reason), from the ledger."""
    txid = request.match_info["txid"]
    if not is_hash(txid):
        raise ServiceError(400, "bad-txid", "a transaction id is 64 lowercase hexadecimal digits")
    status, view = await _ledger(request).request("GET", f"/tx/{txid}")
    if status == 404:
        raise ServiceError(404, "not-found", "the node knows no transaction with that id")
    if status != 200:
        raise ServiceError(502, "ledger-refused", f"the ledger answered {status}")
    return web.json_response(view)


@routes.get("/api/check-address/{address}")
async def api_check_address(request: web.Request) -> web.Response:
    """For pages without WebCrypto's SHA-256: is this a well-formed address?"""
    try:
        decode_address(request.match_info["address"])
    except AddressError as exc:
        return web.json_response({"ok": False, "message": exc.message})
    return web.json_response({"ok": True})


@routes.get("/api/address-of-key/{public_key}")
async def api_address_of_key(request: web.Request) -> web.Response:
    """For pages without WebCrypto's SHA-256: the address of a public key (not a secret)."""
    text = request.match_info["public_key"]
    if not is_hash(text):  # 64 lowercase hex digits, like a hash
        raise ServiceError(400, "bad-public-key", "a public key is 64 lowercase hex digits")
    return web.json_response({"address": address_from_public_key(bytes.fromhex(text))})


@routes.post("/api/broadcast")
async def api_broadcast(request: web.Request) -> web.Response:
    """A transaction signed in the browser, passed to the ledger (which checks everything)."""
    body = await read_json_object(request)
    try:
        tx = Transaction.from_dict(body)
    except ValidationError as exc:
        raise ServiceError(400, str(exc.reason), exc.message) from None
    except (TypeError, ValueError) as exc:
        raise ServiceError(400, "bad-transaction", str(exc)) from None
    status, answer = await _ledger(request).request("POST", "/transactions/new", json=tx.to_dict())
    if status not in (200, 201):
        refusal = 400 <= status < 500 or status == 503  # 503: mempool-full, say so
        if isinstance(answer, dict) and "reason" in answer and refusal:
            raise ServiceError(status, str(answer["reason"]), str(answer.get("error", "")))
        raise ServiceError(502, "ledger-refused", f"the ledger answered {status}")
    settings = request.app[SETTINGS]
    logger.info("broadcast txid=%s", tx.txid[:16])
    return web.json_response(
        {"txid": tx.txid, "explorer_url": f"{settings.explorer_url}/tx/{tx.txid}"}, status=201
    )


@routes.post("/api/faucet")
async def api_faucet(request: web.Request) -> web.Response:
    """`{"address"}`: the faucet amount, rate-limited; `{"address", "amount"}` (units): an
    operator payment (the operator token, or a loopback client when none is set)."""
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    body = await read_json_object(request)
    address = body.get("address")
    if not isinstance(address, str):
        raise ServiceError(400, "bad-address", 'send {"address": "P..."}')
    _address(address)
    amount = body.get("amount")
    client = client_key(request)
    local = client == LOOPBACK_CLIENT  # behind a trusted proxy: the forwarded client
    if amount is not None and not settings.operator_token and not local:
        # no token: only the node's own machine may choose an amount (a stranger may not)
        raise ServiceError(
            403, "operator-only", "an amount is for this node's operator: ask from its machine"
        )
    try:
        tx = await request.app[FAUCET].pay(address, client, amount=amount)
    except RateLimitedError as exc:
        return web.json_response(
            exc.to_dict(), status=429, headers={"Retry-After": str(exc.retry_after)}
        )
    logger.info("faucet paid address=%s amount=%d txid=%s", address, tx.amount, tx.txid[:16])
    return web.json_response(
        {
            "txid": tx.txid,
            "amount": tx.amount,
            "explorer_url": f"{settings.explorer_url}/tx/{tx.txid}",
        },
        status=201,
    )


@routes.get("/api/fees")
async def api_fees(request: web.Request) -> web.Response:
    """The ledger's fee suggestions (`minimum`, `next_block`, `economy`, `capacity`)."""
    fees = await _ledger(request).get("/fees")
    return web.json_response(
        {name: fees[name] for name in ("minimum", "next_block", "economy", "capacity")}
    )


def _payment_request(request: web.Request) -> PaymentRequest:
    """`?address=&amount=&label=` (amount in pyBTC, optional; label optional), checked."""
    query = request.query
    for name in query:
        if len(query.getall(name)) > 1:
            raise ServiceError(400, "bad-request", f"{name} is given twice")
    try:
        return make(query.get("address", ""), query.get("amount") or None, query.get("label", ""))
    except PaymentRequestError as exc:
        raise ServiceError(400, f"bad-{exc.field}", exc.message) from None


def _request_query(wanted: PaymentRequest) -> str:
    query = {"address": wanted.address, "label": wanted.label}
    if wanted.amount is not None:
        query["amount"] = coins_text(wanted.amount)
    return urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


@routes.get("/api/payment-request")
async def api_payment_request(request: web.Request) -> web.Response:
    """A `pybtc:` URI for an amount and a label, and where its QR code is."""
    wanted = _payment_request(request)
    uri = wanted.uri()
    return web.json_response(
        {
            "uri": uri,
            "address": wanted.address,
            "amount": wanted.amount,
            "label": wanted.label,
            "qr": f"/api/payment-request.svg?{_request_query(wanted)}",
        }
    )


@routes.get("/api/payment-request.svg")
async def payment_request_qr(request: web.Request) -> web.Response:
    """The payment request of `?address=&amount=&label=` as a QR code."""
    uri = _payment_request(request).uri()
    return _svg(uri, title=uri)


@routes.get("/qr/{address}.svg")
async def qr(request: web.Request) -> web.Response:
    address = _address(request.match_info["address"])
    return _svg(address, title=address)


def _svg(text: str, title: str) -> web.Response:
    code = segno.make(text, error="m")
    out = io.BytesIO()
    code.save(out, kind="svg", scale=5, border=2, xmldecl=False, title=title)
    return web.Response(
        body=out.getvalue(),
        content_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    return await request.app[BROADCASTER].stream(request)

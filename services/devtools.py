"""`pybtc mine` and `pybtc faucet`: mine and pay on demand, as regtest boxes do.

Both find the node by the same settings as the node (`Settings.from_env()`: PYBTC_LEDGER_PORT,
PYBTC_PORT_OFFSET, PYBTC_LEDGER_URL, …), or `--node URL`, and send PYBTC_OPERATOR_TOKEN as a
Bearer token when it is set.

On regtest `pybtc mine N` is Bitcoin Core's `generatetoaddress`: it takes templates from the
ledger's own mining API (`GET /mining/template?address=`), solves each header here (regtest's
target is met by about every other hash) and submits it (`POST /mining/submit`); a template
the chain outran is fetched again. On devnet the proof of work is real, so it asks the node's
miner through the ledger's `GET /mine`, one block at a time, and shows the miner's hash rate
while it waits.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import click

from pybtc import NETWORKS, AddressError, Block, ValidationError, decode_address
from pybtc.pow import bits_to_target, search_nonce
from services.common.entry import load_settings
from services.wallet.cli import parse_coins, show_payment, wallet_service_default
from services.wallet.remote import Remote, Reply, faucet_request, printable

STALE = frozenset({"low-work", "duplicate-block", "bad-previous", "orphan", "stale-template"})
"""Refusals of a solved template that only mean another block came first: fetch again."""
MAX_TRIES = 20
"""Stale templates in a row before `pybtc mine` gives up (something else is wrong)."""
SUMMARY_AFTER = 20
"""Above this many blocks, a line every tenth of the way rather than one per block."""
DEVNET_BLOCK_WAIT = 600.0
"""Seconds one devnet block may take (the ledger's PYBTC_MINE_TIMEOUT caps it further)."""
NONCES = 1 << 32
PROGRESS_EVERY = 5.0
"""Seconds between progress lines while a devnet block is being mined."""


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _network(ledger: Remote) -> str:
    runs = ledger.get("/status").get("network")
    if runs not in NETWORKS:
        raise click.ClickException(f"{ledger.base_url} is not a pyBTC ledger (GET /status)")
    return str(runs)


def _height(ledger: Remote) -> int:
    height = ledger.get("/status").get("height")
    if not isinstance(height, int) or isinstance(height, bool):
        raise click.ClickException(f"{ledger.base_url} answered GET /status without a height")
    return height


def _checked_address(text: str) -> str:
    try:
        decode_address(text)
    except AddressError as exc:
        raise click.ClickException(f"{text!r} is not a pyBTC address: {exc.message}") from None
    return text


def solve(template: Block) -> Block:
    """The template with a nonce that meets its target (quick on regtest only)."""
    target = bits_to_target(template.header.bits)
    nonce = search_nonce(template.header.prefix_bytes(), target, 0, NONCES)
    if nonce is None:  # the timestamp of the next template differs: a fresh search space
        raise click.ClickException("no nonce meets this template's target; try again")
    return template.with_nonce(nonce)


def _mine_regtest(ledger: Remote, address: str, count: int, token: str) -> None:
    step = max(1, count // 10) if count > SUMMARY_AFTER else 1
    tries = 0
    mined = 0
    while mined < count:
        body = ledger.get(f"/mining/template?address={address}")
        try:
            block = solve(Block.from_dict(body.get("block")))
        except (ValidationError, TypeError, ValueError) as exc:
            raise click.ClickException(f"the node sent a bad template: {exc}") from None
        reply = ledger.call("POST", "/mining/submit", block.to_dict(), _auth(token))
        answer = reply.body if isinstance(reply.body, dict) else {}
        if reply.status == 201 and answer.get("is_tip") is False and tries + 1 < MAX_TRIES:
            tries += 1  # stored on a side branch: another block took the tip meanwhile
            continue
        if reply.status != 201:
            reason = answer.get("reason")
            tries += 1
            if (reply.status == 409 or reason in STALE) and tries < MAX_TRIES:
                continue  # another block came first: a fresh template
            raise click.ClickException(ledger.refusal(reply, "the block"))
        tries = 0
        mined += 1
        if mined % step == 0 or mined == count:
            click.echo(f"block {mined}/{count}  height {block.index}  {block.hash[:16]}")


def _mine_devnet(ledger: Remote, miner: Remote | None, count: int, token: str) -> None:
    pool = ThreadPoolExecutor(1)  # the request waits; this thread shows the miner meanwhile
    try:
        for k in range(1, count + 1):
            started = time.monotonic()
            asked = pool.submit(ledger.call, "GET", "/mine", None, _auth(token), DEVNET_BLOCK_WAIT)
            while True:
                try:
                    result = asked.result(timeout=PROGRESS_EVERY)
                    break
                except FutureTimeout:
                    click.echo(f"  waiting for block {k}/{count}: {_miner_progress(miner)}")
            _show_mined(ledger, result, k, count, time.monotonic() - started)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _show_mined(ledger: Remote, result: Reply, k: int, count: int, seconds: float) -> None:
    body = ledger.expect(result, 200, "GET /mine")
    height = printable(str(body.get("index", "?")))
    block_hash = printable(str(body.get("hash", "")))[:16]
    click.echo(f"block {k}/{count}  height {height}  {block_hash}  {seconds:.1f} s")


def _miner_progress(miner: Remote | None) -> str:
    if miner is None:
        return "the miner's status is not reachable"
    try:
        status = miner.get("/status")
    except click.ClickException:
        return "the miner's status is not reachable"
    rate = status.get("hash_rate")
    activity = printable(str(status.get("activity", "")))
    shown = f"{rate:.0f} H/s" if isinstance(rate, int | float) else "? H/s"
    return f"{activity}, {shown}" if activity else shown


def _miner_address(miner: Remote) -> str:
    address = miner.get("/status").get("address")
    if not isinstance(address, str):
        raise click.ClickException("the miner's /status names no address; give --to ADDRESS")
    return _checked_address(address)


node_option = click.option(
    "--node",
    metavar="URL",
    default=None,
    help="The node's ledger (default: the node's settings, PYBTC_LEDGER_PORT and friends).",
)


@click.command(short_help="Mine N blocks now (regtest at once; devnet by the node's miner).")
@click.argument("count", metavar="N", type=click.IntRange(1, 1000))
@click.option("--to", "to", metavar="ADDRESS", help="Pay the blocks here (regtest only).")
@node_option
def mine(count: int, to: str | None, node: str | None) -> None:
    """Mine N blocks (1 to 1000) on this machine's node.

    On regtest the blocks are solved here, through the node's mining API, paying --to or the
    node's mining address (the miner's). On devnet the node's miner mines them, one after the
    other, and the progress is shown.
    """
    settings = load_settings()  # exit 2 naming a bad setting
    ledger = Remote.at(node or settings.ledger_client_url, "the node", "--node or PYBTC_LEDGER_URL")
    miner = Remote.at(settings.miner_client_url, "the miner", "PYBTC_MINER_URL or PYBTC_MINER_PORT")
    token = settings.operator_token
    network = _network(ledger)
    if to is not None:
        _checked_address(to)
    if network != "regtest":
        if to is not None:
            raise click.ClickException(
                f"--to works on regtest only: on {network} the node's miner mines and pays its "
                "own address (PYBTC_MINER_ADDRESS); send coins on with pybtc faucet"
            )
        start = _height(ledger)
        click.echo(f"asking the node's miner for {count} block(s) on {network} (height {start})")
        _mine_devnet(ledger, miner, count, token)
    else:
        if to is None:
            to = _miner_address(miner)
            click.echo(f"paying the node's mining address {to} (the miner's /status)")
        else:
            click.echo(f"paying {to}")
        _mine_regtest(ledger, to, count, token)
    click.echo(f"height {_height(ledger)}")


@click.command(short_help="Pay test coins to ADDRESS from the node's key.")
@click.argument("address")
@click.argument("amount", required=False)
@click.option(
    "--wallet-url",
    metavar="URL",
    default=None,
    help="The node's wallet service (default: PYBTC_WALLET_URL, else the node's settings: "
    "PYBTC_WALLET_PORT and PYBTC_PORT_OFFSET).",
)
def faucet(address: str, amount: str | None, wallet_url: str | None) -> None:
    """Pay AMOUNT pyBTC (default: the faucet amount) to ADDRESS from the node's key.

    An amount is for the node's operator: PYBTC_OPERATOR_TOKEN when the node has one, else
    this command must run on the node's machine. Operator payments are not rate-limited.
    """
    settings = load_settings()  # exit 2 naming a bad setting
    _checked_address(address)
    body: dict[str, Any] = {"address": address}
    if amount is not None:
        units = parse_coins("AMOUNT", amount)
        if units <= 0:
            raise click.ClickException(f"AMOUNT {amount!r}: must be more than 0")
        body["amount"] = units
    url = wallet_url or wallet_service_default()[0]  # as `pybtc wallet faucet` finds it
    service = Remote.at(url, "the wallet service", "--wallet-url or PYBTC_WALLET_URL")
    show_payment(address, faucet_request(service, body, settings.operator_token))

"""`pybtc wallet`: a wallet in the shell, non-custodial like the browser's (docs/wallet.md).

The key lives in a wallet file (services/wallet/keyfile.py) under a passphrase asked at a
prompt or read from PYBTC_WALLET_PASSPHRASE. Transactions are signed here and only the signed
transaction is sent to the ledger. The ledger and the wallet service are spoken to with the
standard library's urllib: JSON, a timeout, no redirects, no proxy for loopback; every network
error and every refusal (`{"error", "reason"}`) ends the command with one clear line.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pybtc import (
    NETWORKS,
    AddressError,
    PrivateKey,
    Transaction,
    ValidationError,
    decode_address,
    format_amount,
    get_params,
    parse_amount,
)
from services.wallet.history import history_lines
from services.wallet.keyfile import (
    KeyFile,
    KeyFileError,
    decrypt_key,
    encrypt_key,
    parse_key_file,
    read_key_file,
    write_key_file,
)
from services.wallet.remote import Remote, faucet_request, printable
from services.wallet.where import SettingsDefault, ledger_default
from services.wallet.where import wallet_service_default as wallet_service_default  # devtools

DEFAULT_FEE = 1_000
"""The ledger's minimum relay fee (Settings.min_fee), in units."""
PASSPHRASE_VARIABLE = "PYBTC_WALLET_PASSPHRASE"  # noqa: S105 - a variable's name, not a secret

F = TypeVar("F", bound=Callable[..., Any])


# -- shared options and steps --------------------------------------------------------------------


def wallet_options(*, node: bool) -> Callable[[F], F]:
    """--network and --file, and --node when the command talks to a ledger."""

    def decorate(command: F) -> F:
        if node:
            command = click.option(
                "--node",
                cls=SettingsDefault,
                resolve=ledger_default,
                metavar="URL",
                help="The ledger to read from and send to.",
            )(command)
        command = click.option(
            "--file",
            "file_path",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="PYBTC_WALLET_FILE",
            show_envvar=True,
            help="The wallet file [default: ./wallet-<network>.json].",
        )(command)
        return click.option(
            "--network",
            type=click.Choice(sorted(NETWORKS)),
            default="devnet",
            show_default=True,
            envvar="PYBTC_NETWORK",
            show_envvar=True,
            help="The chain this wallet is for.",
        )(command)

    return decorate


def wallet_path(file_path: Path | None, network: str) -> Path:
    return file_path if file_path is not None else Path(f"wallet-{network}.json")


def load_wallet(file_path: Path | None, network: str) -> tuple[Path, dict[str, Any], KeyFile]:
    """The wallet file, checked without its passphrase: (path, JSON object, parsed)."""
    path = wallet_path(file_path, network)
    if not path.exists():
        raise click.ClickException(
            f"no wallet file at {path} (make one with `pybtc wallet new`, or give --file "
            f"or PYBTC_WALLET_FILE)"
        )
    try:
        doc = read_key_file(path)
        parsed = parse_key_file(doc)
    except KeyFileError as exc:
        raise click.ClickException(exc.message) from None
    if parsed.network != network:
        raise click.ClickException(
            f"{path} is a {parsed.network} wallet, not {network} (use --network {parsed.network})"
        )
    return path, doc, parsed


def unlock(path: Path, doc: dict[str, Any], network: str) -> PrivateKey:
    """The private key: the passphrase from PYBTC_WALLET_PASSPHRASE or a hidden prompt."""
    passphrase = os.environ.get(PASSPHRASE_VARIABLE)
    if passphrase is None:
        passphrase = click.prompt(f"Passphrase of {path}", hide_input=True)
    try:
        return decrypt_key(doc, passphrase, network=network)
    except KeyFileError as exc:
        raise click.ClickException(f"cannot open {path}: {exc.message}") from None


def chosen_address(address: str | None, file_path: Path | None, network: str) -> str:
    """ADDRESS when given (checked), else the wallet file's."""
    if address is None:
        return load_wallet(file_path, network)[2].address
    try:
        decode_address(address)
    except AddressError as exc:
        raise click.ClickException(f"invalid address: {exc.message}") from None
    return address


def ledger_for(node: str, network: str) -> Remote:
    """The ledger at `node`, refused unless it runs `network` (else signatures would not match)."""
    ledger = Remote.at(node, "the node", "--node or PYBTC_LEDGER_URL")
    runs = ledger.get("/status").get("network")
    if runs not in NETWORKS:
        raise click.ClickException(f"{ledger.base_url} is not a pyBTC ledger (GET /status)")
    if runs != network:
        raise click.ClickException(
            f"the node at {ledger.base_url} runs {runs}, not {network} "
            f"(use --network {runs}, or another --node)"
        )
    return ledger


def number(body: dict[str, Any], name: str) -> int:
    """An integer field of a ledger answer (a wrong answer must not become a wrong tx)."""
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise click.ClickException(f"the node's answer has no valid {name!r}")
    return value


def coins(units: int, *, signed: bool = False) -> str:
    text = format_amount(units)
    return f"+{text}" if signed and units > 0 else text


def parse_coins(what: str, text: str) -> int:
    """`text` as exact units (at most 8 decimals, never rounded); ClickException otherwise."""
    if text.strip().startswith("-"):
        raise click.ClickException(f"{what} {text!r}: cannot be negative")
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise click.ClickException(f"{what} {text!r}: {exc}") from None


# -- the commands --------------------------------------------------------------------------------


@click.group()
def wallet() -> None:
    """A wallet in your shell: make a key, see balance and history, send, get test coins.

    The key is kept in a wallet file (--file, else PYBTC_WALLET_FILE, else
    ./wallet-<network>.json) encrypted with your passphrase; it never leaves this machine.
    Transactions are signed here and sent to a ledger: --node, else the one the node's own
    settings name (PYBTC_LEDGER_URL, else PYBTC_PUBLIC_URL, else this machine's
    PYBTC_LEDGER_PORT plus PYBTC_PORT_OFFSET, as `pybtc up` uses them). The passphrase is
    asked at a prompt, or read from PYBTC_WALLET_PASSPHRASE for scripts. See docs/wallet.md.

    \b
    Example on a regtest node:
      pybtc wallet new --network regtest
      pybtc wallet balance --network regtest
      pybtc wallet send P... 1.5 --network regtest
    """


@wallet.command(short_help="Make a key and write it to a new wallet file.")
@wallet_options(node=False)
def new(network: str, file_path: Path | None) -> None:
    """Make a new key and write it to a new wallet file under a passphrase.

    The passphrase is asked twice (hidden), or read from PYBTC_WALLET_PASSPHRASE. An existing
    file is never overwritten. Without the file and its passphrase the coins cannot be spent.
    """
    path = wallet_path(file_path, network)
    if path.exists():
        raise click.ClickException(f"{path} exists already; not overwriting a wallet file")
    passphrase = os.environ.get(PASSPHRASE_VARIABLE)
    if passphrase is None:
        passphrase = click.prompt(
            "New passphrase",
            default="",
            show_default=False,
            hide_input=True,
            confirmation_prompt="Repeat the passphrase",
        )
    if not passphrase:
        raise click.ClickException("the passphrase is empty; a wallet file needs one")
    key = PrivateKey.generate()
    try:
        write_key_file(path, encrypt_key(key, passphrase, network))
    except KeyFileError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"address      {key.address}")
    click.echo(f"wallet file  {path.resolve()} (readable by you only)")
    click.echo("keep a copy of the file and remember the passphrase: both are needed to spend")


@wallet.command(short_help="Print the wallet's address (no passphrase).")
@wallet_options(node=False)
def address(network: str, file_path: Path | None) -> None:
    """Print the wallet file's address (no passphrase needed)."""
    click.echo(load_wallet(file_path, network)[2].address)


@wallet.command(short_help="Spendable, confirmed and unconfirmed balance, next nonce.")
@click.argument("address", required=False)
@wallet_options(node=True)
def balance(address: str | None, network: str, file_path: Path | None, node: str) -> None:
    """Show what ADDRESS (default: the wallet's) can spend now, its confirmed balance and its
    balance including pending transactions."""
    target = chosen_address(address, file_path, network)
    info = ledger_for(node, network).get(f"/address/{target}")
    click.echo(f"address      {target}")
    click.echo(
        f"spendable    {coins(info['spendable'])} pyBTC (what send can spend now, fee included)"
    )
    click.echo(f"confirmed    {coins(info['balance'])} pyBTC")
    click.echo(
        f"unconfirmed  {coins(info['unconfirmed_balance'])} pyBTC including pending "
        f"({info.get('pending_count', 0)} pending)"
    )
    click.echo(f"next nonce   {info['next_nonce']}")


@wallet.command(short_help="Pending and confirmed transactions.")
@click.argument("address", required=False)
@click.option(
    "--limit",
    type=click.IntRange(1, 500),
    default=25,
    show_default=True,
    help="How many confirmed transactions to show.",
)
@click.option(
    "--offset",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Skip this many of the newest confirmed ones.",
)
@wallet_options(node=True)
def history(
    address: str | None, limit: int, offset: int, network: str, file_path: Path | None, node: str
) -> None:
    """List ADDRESS's transactions (default: the wallet's): recently dropped ones (with why),
    pending ones (re-queued after a reorg said so), then confirmed ones newest first, each with
    its date (UTC), counterparty, what it did to the balance, its fee and the balance after."""
    target = chosen_address(address, file_path, network)
    query = urllib.parse.urlencode({"offset": offset, "limit": limit})
    page = ledger_for(node, network).get(f"/address/{target}/history?{query}")
    click.echo(f"address {target}: {page['total']} confirmed transactions")
    lines = history_lines(page, target)
    if not lines:
        click.echo("no transactions" + (" on this page" if offset else " yet"))
        return
    for line in lines:
        click.echo(printable(line, limit=400))
    shown_to = offset + len(page["confirmed"])
    if shown_to < page["total"]:
        click.echo(f"(confirmed {offset + 1}-{shown_to} of {page['total']}: --offset {shown_to})")


@wallet.command(
    short_help="Sign and send AMOUNT pyBTC to RECIPIENT.",
    context_settings={"ignore_unknown_options": True},  # so "-1" reaches AMOUNT and is refused
)
@click.argument("recipient")
@click.argument("amount")
@click.option(
    "--fee",
    metavar="PYBTC",
    help=f"The fee in pyBTC [default: {format_amount(DEFAULT_FEE)}, the minimum relay fee].",
)
@click.option("--yes", "-y", is_flag=True, help="Send without asking for confirmation.")
@wallet_options(node=True)
def send(
    recipient: str,
    amount: str,
    fee: str | None,
    yes: bool,
    network: str,
    file_path: Path | None,
    node: str,
) -> None:
    """Send AMOUNT pyBTC (up to 8 decimals, exact) to RECIPIENT, signed with the wallet's key.

    The nonce is the ledger's next nonce for the wallet (pending transactions counted). A
    summary is shown and confirmed first unless --yes.
    """
    units = parse_coins("amount", amount)
    if units == 0:
        raise click.ClickException(f"amount {amount!r}: must be more than 0")
    fee_units = DEFAULT_FEE if fee is None else parse_coins("fee", fee)
    try:
        decode_address(recipient)
    except AddressError as exc:
        raise click.ClickException(f"invalid recipient address: {exc.message}") from None
    path, doc, parsed = load_wallet(file_path, network)
    sender = parsed.address
    if recipient == sender:
        raise click.ClickException("the recipient is this wallet's own address; not sending")
    ledger = ledger_for(node, network)
    info = ledger.get(f"/address/{sender}")
    nonce = number(info, "next_nonce")
    at_most = number(info, "spendable")  # the ledger's figure (and it has the last word)
    if units + fee_units > at_most:
        raise click.ClickException(
            f"not enough coins: {coins(units)} + fee {coins(fee_units)} pyBTC is more than the "
            f"{coins(at_most)} pyBTC this wallet can spend now"
        )
    click.echo(f"send     {coins(units)} pyBTC")
    click.echo(f"to       {recipient}")
    click.echo(f"fee      {coins(fee_units)} pyBTC")
    click.echo(f"total    {coins(units + fee_units)} pyBTC")
    click.echo(f"from     {sender} (nonce {nonce})")
    click.echo(f"network  {network} via {ledger.base_url}")
    if not yes:
        click.confirm("Sign and send?", abort=True)
    key = unlock(path, doc, network)
    try:
        tx = Transaction.create(
            key,
            recipient,
            units,
            fee=fee_units,
            nonce=nonce,
            timestamp=int(time.time()),
            network_id=get_params(network).network_id,
        )
    except ValidationError as exc:
        raise click.ClickException(f"cannot make this transaction: {exc.message}") from None
    answer = ledger.expect(
        ledger.call("POST", "/transactions/new", tx.to_dict()), 201, "the transaction"
    )
    click.echo(f"txid     {tx.txid}")
    wait = answer.get("blocks_to_wait")
    click.echo(
        f"status   {answer.get('status', 'pending')} "
        f"(position {answer.get('mempool_position', '?')} in the mempool"
        + (
            f", expected in {wait} block{'s' if wait != 1 else ''})"
            if isinstance(wait, int)
            else ")"
        )
    )


@wallet.command(short_help="Test coins from the node's faucet.")
@click.argument("address", required=False)
@click.option(
    "--wallet-url",
    cls=SettingsDefault,
    resolve=wallet_service_default,
    metavar="URL",
    help="The node's wallet service, which runs the faucet.",
)
@click.option(
    "--operator-token",
    metavar="TOKEN",
    default="",
    envvar="PYBTC_OPERATOR_TOKEN",
    show_envvar=True,
    help="The node's operator token, when its faucet is operator-only.",
)
@wallet_options(node=False)
def faucet(
    address: str | None, wallet_url: str, operator_token: str, network: str, file_path: Path | None
) -> None:
    """Ask the node's faucet for test coins for ADDRESS (default: the wallet's).

    Devnet and regtest coins only: they have no value. The faucet limits how often it pays.
    """
    target = chosen_address(address, file_path, network)
    service = Remote.at(wallet_url, "the wallet service", "--wallet-url or PYBTC_WALLET_URL")
    show_payment(target, faucet_request(service, {"address": target}, operator_token))


def show_payment(address: str, paid: dict[str, Any]) -> None:
    """The faucet's 201 answer, a line each (what the service sent is shown printable only)."""
    amount = paid.get("amount")
    shown = f"{coins(amount)} pyBTC" if isinstance(amount, int) else printable(str(amount))
    click.echo(f"address  {address}")
    click.echo(f"amount   {shown}")
    click.echo(f"txid     {printable(str(paid.get('txid')))}")

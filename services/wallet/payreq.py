"""`pybtc:` payment requests: `pybtc:<address>?amount=<pyBTC>&label=<text>` (docs/wallet.md).

Like Bitcoin's BIP 21: the amount is in coins (pyBTC, at most 8 decimals, written without
trailing zeros), the label is percent-encoded UTF-8. The browser wallet reads them back in
static/payreq.js; `parse` here is the same reading, for the CLI and the tests.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from pybtc import AddressError, decode_address, format_amount, parse_amount

SCHEME = "pybtc"
MAX_LABEL = 100
"""The longest label, in characters (a QR code of the whole request stays easy to scan)."""


class PaymentRequestError(ValueError):
    """What is wrong with a request, and which part (`field`: address, amount or label)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PaymentRequest:
    address: str
    amount: int | None = None
    """Units (None: the payer chooses)."""
    label: str = ""

    def uri(self) -> str:
        query = {}
        if self.amount is not None:
            query["amount"] = coins_text(self.amount)
        if self.label:
            query["label"] = self.label
        tail = urllib.parse.urlencode(query, quote_via=urllib.parse.quote) if query else ""
        return f"{SCHEME}:{self.address}" + (f"?{tail}" if tail else "")


def coins_text(units: int) -> str:
    """Units as pyBTC without trailing zeros: 50_000_000 -> "0.5", 2 * COIN -> "2"."""
    return format_amount(units).rstrip("0").rstrip(".")


def check_address(address: str) -> str:
    try:
        decode_address(address)
    except AddressError as exc:
        raise PaymentRequestError(
            "address", f"that is not a pyBTC address: {exc.message}"
        ) from None
    return address


def check_amount(text: str) -> int:
    """pyBTC as typed (e.g. "0.5") as units, more than zero."""
    try:
        units = parse_amount(text)
    except ValueError as exc:
        raise PaymentRequestError("amount", f"amount {text[:40]!r}: {exc}") from None
    if units <= 0:
        raise PaymentRequestError("amount", "amount: ask for more than zero, or give none")
    return units


def check_label(label: str) -> str:
    if len(label) > MAX_LABEL:
        raise PaymentRequestError("label", f"the label is longer than {MAX_LABEL} characters")
    if not label.isprintable():
        raise PaymentRequestError("label", "the label holds a control character")
    return label


def make(address: str, amount: str | None, label: str) -> PaymentRequest:
    """A request from form fields (amount in pyBTC, or None), each checked."""
    units = None if amount is None else check_amount(amount)
    return PaymentRequest(check_address(address), units, check_label(label.strip()))


def parse(uri: str) -> PaymentRequest:
    """A `pybtc:` URI read back, or PaymentRequestError saying what is wrong."""
    text = uri.strip()
    if text[: len(SCHEME) + 1].lower() != f"{SCHEME}:":
        raise PaymentRequestError("address", f"a payment request starts with {SCHEME}:")
    address, _, query = text[len(SCHEME) + 1 :].partition("?")
    fields: dict[str, str] = {}
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        if name in fields:
            raise PaymentRequestError(name, f"it gives {name} twice")
        try:
            fields[name] = urllib.parse.unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise PaymentRequestError(name, f"its {name} is not UTF-8 percent-encoded") from None
    for name in fields:
        if name.startswith("req-"):
            raise PaymentRequestError(
                name, f"it requires {name!r}, which this wallet does not know"
            )
    return make(address, fields.get("amount"), fields.get("label", ""))

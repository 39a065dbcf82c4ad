"""Write the golden vectors of the pyBTC protocol: `python -m tests.vectors.generate`.

Every value is computed by `pybtc` from fixed inputs (keys from seeds such as
sha256(b"pybtc vector key 1"), fixed timestamps after the genesis time) by the builders in
`primitives`, `objects` and `consensus` (and `wallet`: the wallet file of docs/wallet.md,
from `services.wallet.keyfile`, with fixed salts and nonces), so running this twice gives the
same files byte for byte. `tests/unit/test_vectors.py` checks the code against the
files and checks that `build()` still reproduces them exactly; a change here is a protocol
change (docs/protocol.md).

Conventions in the files: bytes are lowercase hex; integers that can exceed 2**53 (u64
values, targets, work) are strings (decimal, or 64 hex digits for a target) so a JavaScript
reader loses nothing; `bits` appears both as an integer and as "0x%08x".
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from tests.vectors.common import VECTOR_DIR
from tests.vectors.consensus import (
    difficulty_vectors,
    params_vectors,
    pow_vectors,
    reasons_vectors,
    subsidy_vectors,
)
from tests.vectors.objects import blocks_vectors, merkle_vectors, transactions_vectors
from tests.vectors.primitives import addresses_vectors, encoding_vectors, keys_vectors
from tests.vectors.wallet import wallet_file_vectors

FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "encoding.json": encoding_vectors,
    "keys.json": keys_vectors,
    "addresses.json": addresses_vectors,
    "transactions.json": transactions_vectors,
    "merkle.json": merkle_vectors,
    "blocks.json": blocks_vectors,
    "pow.json": pow_vectors,
    "difficulty.json": difficulty_vectors,
    "subsidy.json": subsidy_vectors,
    "params.json": params_vectors,
    "reasons.json": reasons_vectors,
    "wallet_file.json": wallet_file_vectors,
}


def render(data: dict[str, Any]) -> str:
    """The file text: sorted keys, two-space indent, ASCII only, a trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def build() -> dict[str, str]:
    """File name -> file text for every vector file."""
    return {name: render(make()) for name, make in FILES.items()}


def main() -> None:
    """Rewrite every vector file next to this script."""
    for name, text in build().items():
        (VECTOR_DIR / name).write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote tests/vectors/{name}\n")


if __name__ == "__main__":
    main()

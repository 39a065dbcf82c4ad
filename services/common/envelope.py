"""The bus's message format: channel names and the versioned JSON envelope, read strictly.

    {"v": 1, "type": "<kind>", "origin": "<origin id>", "seq": <int>, "data": {...}}

Anyone who can reach the Redis can publish, so `Envelope.from_json` accepts exactly this shape
and nothing else (no NaN, no duplicate keys, bounded size) and raises `BusMessageError` with a
short reason code otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: announcements are small; a block is fetched over HTTP
MAX_SEQ = (1 << 63) - 1
NETWORK_RE = re.compile(r"[a-z0-9-]{1,32}")
ORIGIN_RE = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces: safe in log lines
_KEYS = frozenset({"v", "type", "origin", "seq", "data"})


class Kind(StrEnum):
    """What an announcement is about; each kind has its own channel."""

    TX = "tx"
    BLOCK = "block"
    TIP = "tip"
    REORG = "reorg"
    MINING = "mining"


class BusMessageError(ValueError):
    """A bus message is not a valid envelope; `reason` is a short code for logs and counters."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def channel(network: str, kind: Kind | str) -> str:
    """The Redis channel of one kind of announcement on one network: `pybtc:{network}:{kind}`."""
    if not NETWORK_RE.fullmatch(network):
        raise ValueError(f"bad network name {network!r}: expected [a-z0-9-]{{1,32}}")
    return f"pybtc:{network}:{Kind(kind)}"


def _reject_constant(name: str) -> Any:
    raise BusMessageError("non-finite-number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BusMessageError("duplicate-key")
    return obj


@dataclass(frozen=True, slots=True)
class Envelope:
    """One bus message; construction validates every field, so an Envelope is always valid."""

    type: Kind
    origin: str
    seq: int
    data: dict[str, Any] = field(hash=False)
    v: int = VERSION

    def __post_init__(self) -> None:
        if type(self.v) is not int or self.v != VERSION:
            raise BusMessageError("bad-version")
        if not isinstance(self.type, Kind):
            raise BusMessageError("bad-type")
        if not isinstance(self.origin, str) or not ORIGIN_RE.fullmatch(self.origin):
            raise BusMessageError("bad-origin")
        if type(self.seq) is not int or not 0 <= self.seq <= MAX_SEQ:
            raise BusMessageError("bad-seq")
        if not isinstance(self.data, dict):
            raise BusMessageError("bad-data")

    def to_json(self) -> str:
        """The compact JSON form published on the channel."""
        obj = {"v": self.v, "type": str(self.type), "origin": self.origin, "seq": self.seq}
        obj["data"] = self.data
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        """Parse untrusted input; raise BusMessageError unless it is exactly a v1 envelope."""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")  # a lone surrogate fails decode() below
        if len(raw) > MAX_MESSAGE_BYTES:
            raise BusMessageError("too-large")
        try:
            text = raw.decode("utf-8")
            obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except BusMessageError:
            raise
        except (ValueError, RecursionError):  # JSON, UTF-8, nesting and int-size errors
            raise BusMessageError("not-json") from None
        if not isinstance(obj, dict):
            raise BusMessageError("not-object")
        if obj.keys() != _KEYS:
            raise BusMessageError("bad-keys")
        try:
            kind = Kind(obj["type"])
        except (ValueError, TypeError):
            raise BusMessageError("bad-type") from None
        return cls(type=kind, origin=obj["origin"], seq=obj["seq"], data=obj["data"], v=obj["v"])

"""The HTTP client the other services of a node use to talk to their own ledger."""

from __future__ import annotations

from json import loads
from typing import Any

import aiohttp

from services.common.web import ServiceError

MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""The most of an answer read from the ledger (a page of blocks is far less)."""


class LedgerClient:
    """GET and POST JSON to this node's ledger (`PYBTC_LEDGER_URL`)."""

    def __init__(
        self, base_url: str, timeout: float = 10.0, max_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_bytes = max_bytes
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"User-Agent": "pyBTC-service"},
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> tuple[int, Any]:
        """(status, JSON body); a ledger that cannot be reached is a ServiceError 503."""
        try:
            async with self.session.request(
                method, self.base_url + path, params=params, json=json, allow_redirects=False
            ) as resp:
                raw = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    raw.extend(chunk)
                    if len(raw) > self.max_bytes:
                        raise ServiceError(
                            502,
                            "ledger-answer-too-large",
                            f"the ledger's answer to {path} is over {self.max_bytes} bytes",
                        )
                return resp.status, loads(raw) if raw.strip() else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ServiceError(
                503, "ledger-unavailable", f"the ledger at {self.base_url} did not answer: {exc}"
            ) from None

    async def get(self, path: str, **params: str) -> Any:
        status, body = await self.request("GET", path, params=params or None)
        if status != 200:
            reason = body.get("reason", "error") if isinstance(body, dict) else "error"
            raise ServiceError(502, str(reason), f"the ledger answered {status} to {path}")
        return body

"""The HTTP client the other services of a node use to talk to their own ledger."""

from __future__ import annotations

from typing import Any

import aiohttp

from services.common.web import ServiceError


class LedgerClient:
    """GET and POST JSON to this node's ledger (`PYBTC_LEDGER_URL`)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
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
                return resp.status, await resp.json(content_type=None)
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

"""Web glue every service shares: JSON errors, security headers, strict JSON, health, metrics.

Every refusal leaves a service as `{"error": "<what is wrong>", "reason": "<code>"}` with a 4xx
status: `pybtc` validation errors (reason codes from `pybtc.errors.Reason`), `ServiceError`s
raised by the services (their own codes), and aiohttp's own HTTP errors (404, 405, 413) turned
into the same shape. An unexpected exception is logged with its traceback and answered 500 with
the same shape — a bug to fix, never a hang or an HTML page.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from pybtc.errors import ValidationError

if TYPE_CHECKING:
    from services.common.bus import Bus

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_HTTP_REASONS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
}


class ServiceError(Exception):
    """A refusal by a service (not a protocol rule): an HTTP status, a reason code, a message."""

    def __init__(
        self, status: int, reason: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}
        """Sent with the refusal (Retry-After, WWW-Authenticate; `Connection: close` closes)."""

    def apply_headers(self, response: web.Response) -> web.Response:
        response.headers.update(self.headers)
        if self.headers.get("Connection") == "close":
            response.force_close()
        return response

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "reason": self.reason}


def http_refusal(exc: web.HTTPException) -> tuple[str, str]:
    """The reason code and message of one of aiohttp's own refusals (404, 405, 413...)."""
    reason = _HTTP_REASONS.get(exc.status, f"http-{exc.status}")
    return reason, exc.reason if exc.status != 413 else "request body is too large"


def keep_allow(exc: web.HTTPException, response: web.Response) -> web.Response:
    """A 405 keeps its `Allow` header."""
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def error_response(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": message, "reason": reason}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every refusal into `{"error", "reason"}` JSON with the right status."""
    try:
        return await handler(request)
    except ValidationError as exc:
        return error_response(400, str(exc.reason), exc.message)
    except ServiceError as exc:
        return exc.apply_headers(error_response(exc.status, exc.reason, exc.message))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason, message = http_refusal(exc)
        return keep_allow(exc, error_response(exc.status, reason, message))
    except Exception:
        logger.exception("unhandled error method=%s path=%s", request.method, request.path)
        return error_response(500, "internal", "internal error (logged on the server)")


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Headers that keep browsers from sniffing, framing or leaking referrers."""
    response = await handler(request)
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys; raise ServiceError 400 `malformed-json`."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("a key appears twice")
        return dict(pairs)

    try:
        return json.loads(
            raw,
            parse_constant=_reject_constant,
            object_pairs_hook=no_duplicates,
        )
    except (ValueError, RecursionError) as exc:
        raise ServiceError(400, "malformed-json", f"the body is not valid JSON: {exc}") from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (413 over the size limit, 400 otherwise)."""
    try:
        raw = await request.read()
    except web.RequestPayloadError as exc:  # e.g. a gzip body that does not decompress
        raise ServiceError(400, "malformed-json", f"the body could not be read: {exc}") from None
    if not raw.strip():
        raise ServiceError(400, "malformed-json", "the body is empty; send a JSON object")
    body = parse_json(raw)
    if not isinstance(body, dict):
        kind = "null" if body is None else type(body).__name__
        raise ServiceError(400, "bad-type", f"the body must be a JSON object, not {kind}")
    return body


def query_int(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; 400 `bad-query` otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):
        raise ServiceError(400, "bad-query", f"{name} must be a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise ServiceError(400, "bad-query", f"{name} must be between {low} and {high}")
    return value


# -- health and metrics ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One line of /healthz: ok or not, a detail, and whether failing makes it unhealthy."""

    name: str
    ok: bool
    detail: str = ""
    fatal: bool = False


HealthCheck = Callable[[web.Application], Awaitable[Check]]


def bus_check(bus: Bus | None) -> Check:
    """The /healthz line of a service's Redis bus: not fatal, "degraded" while it is down."""
    if bus is None:
        return Check("redis", False, "no bus configured")
    if not bus.connected:
        return Check("redis", False, "disconnected; reconnecting (announcements paused)")
    return Check("redis", True, "connected")


class Metrics:
    """A Prometheus registry of one app (not the global one, so tests can build many apps)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pybtc_http_requests",
            "HTTP requests answered, by route and status",
            ["service", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pybtc_http_request_seconds",
            "HTTP request latency by route",
            ["service", "route"],
            registry=self.registry,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        response = await handler(request)
        self.requests.labels(self.service, name, str(response.status)).inc()
        self.latency.labels(self.service, name).observe(time.perf_counter() - start)
        return response

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )


def add_health_and_metrics(
    app: web.Application,
    service: str,
    metrics: Metrics,
    checks: list[HealthCheck],
    instance: str = "",
) -> None:
    """Register GET /healthz and GET /metrics. `instance` (PYBTC_INSTANCE_ID, set by `pybtc up`
    for each run) is in every /healthz body, so that `pybtc up` knows its own services from
    whatever else answers on their ports."""

    async def healthz(request: web.Request) -> web.Response:
        results = [await check(request.app) for check in checks]
        failed_fatal = any(not c.ok and c.fatal for c in results)
        degraded = any(not c.ok for c in results)
        status = "unhealthy" if failed_fatal else "degraded" if degraded else "ok"
        body = {
            "service": service,
            "instance": instance,
            "status": status,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in results},
        }
        return web.json_response(body, status=503 if failed_fatal else 200)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics.handle)


def base_middlewares(metrics: Metrics, *inner: Any) -> list[Any]:
    """The middlewares of a JSON service, outermost first; `inner` run inside the error one
    (so that their refusals are answered in the same shape)."""
    return [security_headers_middleware, metrics.middleware, error_middleware, *inner]

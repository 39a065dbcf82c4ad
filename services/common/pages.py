"""What the browser-facing services (explorer, wallet) share: Jinja2 set-up with autoescape and
the chain's filters, static files, and refusals shown as a readable page (JSON under /api/).

Each service keeps its own `templates/error.html` (given `status`, `message`, `reason`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from pybtc import format_amount
from services.common.web import Handler, ServiceError

logger = logging.getLogger(__name__)


def setup_pages(
    app: web.Application, package: str, filters: dict[str, Callable[..., Any]] | None = None
) -> jinja2.Environment:
    """Templates from `<package>/templates` (autoescape on everywhere, for every extension) and
    `<package>/static` at /static/; the shared filters plus `filters`."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        filters={"coins": coins, "when": when, "short": short, **(filters or {})},
    )
    env.tests["hash"] = is_hash
    app.router.add_static("/static/", path=str(files(package).joinpath("static")), name="static")
    return env


def coins(units: object) -> str:
    """Integer units as pyBTC with eight decimals ("?" for anything else)."""
    if not isinstance(units, int) or isinstance(units, bool):
        return "?"
    return format_amount(units)


def when(timestamp: object) -> str:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp > 2**40:
        return "?"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(text: object, size: int = 16) -> str:
    value = str(text)
    return value if len(value) <= size else value[:size] + "…"


def is_hash(value: object) -> bool:
    """64 lowercase hex digits: safe to put in a link."""
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals as a readable page (JSON for /api/ paths), never a traceback."""
    try:
        return await handler(request)
    except ServiceError as exc:
        return error_page(request, exc.status, exc.message, exc.reason)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(request, exc.status, exc.reason, f"http-{exc.status}")
    except Exception:
        logger.exception("unhandled error path=%s", request.path)
        return error_page(request, 500, "Something went wrong on this page.", "internal")


def error_page(request: web.Request, status: int, message: str, reason: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": message, "reason": reason}, status=status)
    response = aiohttp_jinja2.render_template(
        "error.html", request, {"status": status, "message": message, "reason": reason}
    )
    response.set_status(status)
    return response

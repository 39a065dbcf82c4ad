"""What the browser-facing services (explorer, wallet) share: Jinja2 set-up with autoescape and
the chain's filters (amounts with their unit, relative ages), static files (the shared
stylesheet, copy buttons, the favicon), and refusals shown as a readable page (JSON under /api/).

Each service keeps its own `templates/error.html` (given `status`, `message`, `reason`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from pybtc import format_amount
from services.common import i18n
from services.common.bus import Bus
from services.common.ledger_client import LedgerClient
from services.common.live import Broadcaster, forward_announcements
from services.common.settings import Settings
from services.common.tasks import TASKS
from services.common.web import (
    Check,
    Handler,
    ServiceError,
    bus_check,
    http_refusal,
    keep_allow,
)

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
LEDGER = web.AppKey("ledger", LedgerClient)
BROADCASTER = web.AppKey("broadcaster", Broadcaster)
BUS = web.AppKey("bus", Bus)


def add_ledger_and_live(app: web.Application, service: str) -> None:
    """While the app runs: a client of this node's ledger (app[LEDGER]) and the node's
    announcements fanned out to open pages (app[BROADCASTER]), closed first on shutdown.
    The forwarding runs under the app's supervisor (`add_tasks`, called before)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        app[LEDGER] = LedgerClient(settings.ledger_internal_url, timeout=5.0)
        broadcaster = Broadcaster()
        app[BROADCASTER] = broadcaster
        async with forward_announcements(settings, broadcaster, service, app[TASKS]) as bus:
            if bus is not None:
                app[BUS] = bus
            yield
        await broadcaster.close()
        await app[LEDGER].close()

    async def end_streams(app: web.Application) -> None:  # shutdown never waits for browsers
        await app[BROADCASTER].close()

    app.cleanup_ctx.append(context)
    app.on_shutdown.append(end_streams)


async def bus_health(app: web.Application) -> Check:
    """The /healthz line of the service's bus (live updates)."""
    return bus_check(app.get(BUS))


async def ledger_check(app: web.Application) -> Check:
    """The /healthz line of a service that reads its node's ledger."""
    try:
        await app[LEDGER].get("/status")
    except ServiceError as exc:
        return Check("ledger", False, exc.message)
    return Check("ledger", True, "reachable")


def setup_pages(
    app: web.Application,
    package: str,
    filters: dict[str, Callable[..., Any]] | None = None,
    *,
    translated: bool = False,
) -> jinja2.Environment:
    """Templates from `<package>/templates` (autoescape on everywhere, for every extension),
    `<package>/static` at /static/ and the shared stylesheet at /common/base.css; the shared
    filters plus `filters`. `translated` pages speak the request's language (services.common.
    i18n: `_()`, `{% trans %}`, `lang` in every template, the `/lang` switch); the others
    English."""
    settings = app.get(SETTINGS)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        filters={  # type: ignore[arg-type]  # filters return str, the stub wants exactly that
            "coins": coins,
            "amount": amount,
            "when": _when_in,
            "ago": _ago_in,
            "num": _number_in,
            "short": short,
            **(filters or {}),
        },
    )
    if translated:
        i18n.install(app, env, settings.lang if settings else i18n.LANGUAGES[0])
    env.tests["hash"] = is_hash
    # What every template may use: the server's clock (relative ages, which the page's script
    # keeps fresh) and where the ledger's API document is.
    env.globals["clock"] = lambda: int(time.time())
    env.globals["api_doc"] = f"{settings.ledger_public_url}/openapi.yaml" if settings else ""
    static = files("services.common").joinpath("static")
    app.router.add_static("/common/", path=str(static))
    favicon = static.joinpath("favicon.svg").read_bytes()

    async def favicon_ico(request: web.Request) -> web.Response:
        # Browsers ask for /favicon.ico on their own, whatever the page links.
        return web.Response(body=favicon, content_type="image/svg+xml")

    app.router.add_get("/favicon.ico", favicon_ico)
    app.router.add_static("/static/", path=str(files(package).joinpath("static")), name="static")
    return env


def coins(units: object) -> str:
    """Integer units as pyBTC with eight decimals ("?" for anything else)."""
    if not isinstance(units, int) or isinstance(units, bool):
        return "?"
    return format_amount(units)


def amount(units: object) -> str:
    """Integer units as pyBTC with their unit: "1.50000000 pyBTC" (a no-break space: the unit
    never wraps away from its number)."""
    return f"{coins(units)}\u00a0pyBTC"


def _timestamp(value: object) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**40:
        return None
    return value


def ago(timestamp: object, now: object) -> str:
    """How long before `now` (both unix seconds) `timestamp` was: "just now", "3 min ago",
    "2 h ago", "5 days ago"; a time ahead of `now` (miners' clocks differ) is "in 20 s"."""
    then, at = _timestamp(timestamp), _timestamp(now)
    if then is None or at is None:
        return "?"
    seconds = at - then
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        text = f"{seconds} s"
    elif seconds < 3600:
        text = f"{seconds // 60} min"
    elif seconds < 86400:
        text = f"{seconds // 3600} h"
    else:
        days = seconds // 86400
        text = f"{days} day{'s' if days != 1 else ''}"
    return f"in {text}" if ahead else f"{text} ago"


def when(timestamp: object, lang: str = i18n.LANGUAGES[0]) -> str:
    """A unix time in UTC as `lang` writes it ("2026-12-08 00:16:01 UTC" in English)."""
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp > 2**40:
        return "?"
    return i18n.moment(timestamp, lang)


def _when_in(timestamp: object) -> str:
    return when(timestamp, i18n.CURRENT.get())


def _ago_in(timestamp: object, now: object) -> str:
    lang = i18n.CURRENT.get()
    if lang == i18n.LANGUAGES[0]:
        return ago(timestamp, now)
    then, at = _timestamp(timestamp), _timestamp(now)
    return "?" if then is None or at is None else i18n.age(at - then, lang)


def _number_in(value: object) -> str:
    return i18n.number(value, i18n.CURRENT.get())


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
        response = await handler(request)
        if _missing_static_file(request, response):
            raise web.HTTPNotFound()
        return response
    except ServiceError as exc:
        return exc.apply_headers(error_page(request, exc.status, exc.message, exc.reason))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason, message = http_refusal(exc)
        return keep_allow(exc, error_page(request, exc.status, message, reason))
    except Exception:
        logger.exception("unhandled error path=%s", request.path)
        return error_page(request, 500, "Something went wrong on this page.", "internal")


def _missing_static_file(request: web.Request, response: web.StreamResponse) -> bool:
    """aiohttp's static route answers a file that does not exist with a FileResponse that
    turns into an empty 404 only while being sent; found here, it gets the error page too."""
    resource = request.match_info.route.resource
    if not isinstance(response, web.FileResponse) or not isinstance(resource, web.StaticResource):
        return False
    return not (resource.get_info()["directory"] / request.match_info["filename"]).is_file()


def error_page(request: web.Request, status: int, message: str, reason: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": message, "reason": reason}, status=status)
    if i18n.DEFAULT in request.app:  # a refusal by an outer middleware speaks the language too
        i18n.enter(request)
    page = {"status": status, "message": message, "reason": reason}
    response = aiohttp_jinja2.render_template("error.html", request, page)
    response.set_status(status)
    return response

"""The pages' language: gettext catalogs (`services/locale/<lang>/LC_MESSAGES/messages.po`,
compiled in memory with Babel when first used, so there is no build step), which language a
request gets (the `pybtc_lang` cookie, else `Accept-Language`, else `PYBTC_LANG`), the `/lang`
switch that sets the cookie, and Babel's formatting of numbers, dates and ages per language.

English is the source language: its "catalog" is the templates' own text.
"""

from __future__ import annotations

import io
import logging
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import cache
from gettext import GNUTranslations, NullTranslations
from importlib.resources import files
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from babel import Locale, negotiate_locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from services.common.web import Handler

logger = logging.getLogger(__name__)

LANGUAGES = ("en", "ko")
"""What the pages speak, the source language first."""
LANGUAGE_NAMES = {"en": "English", "ko": "한국어"}
"""Each language in its own words, for the switch."""
COOKIE = "pybtc_lang"
CHOSEN = web.RequestKey("language", str)
DEFAULT = web.AppKey("default_language", str)
MAX_HEADER = 512
"""Longer Accept-Language headers are read only this far (a cheap bound on the parsing)."""


@cache
def translations(lang: str) -> NullTranslations:
    """The catalog of `lang`, compiled from its .po file (English: the source text itself)."""
    if lang == LANGUAGES[0]:
        return NullTranslations()
    po = files("services").joinpath("locale", lang, "LC_MESSAGES", "messages.po")
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    logger.info("catalog compiled lang=%s messages=%d", lang, len(catalog))
    return GNUTranslations(compiled)


def accepted(header: str) -> list[str]:
    """The languages of an Accept-Language header, most wanted first; junk is skipped."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header[:MAX_HEADER].split(",")):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        name = name.strip()
        if name and name != "*" and quality > 0 and len(name) <= 35:
            ranked.append((-quality, position, name))
    return [name for _, _, name in sorted(ranked)]


def choose(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The language of a request: a known cookie value, else the browser's best known
    language, else `default`. Anything unknown or malformed falls through silently."""
    if cookie in LANGUAGES:
        return cookie
    if accept_language:
        try:
            best = negotiate_locale(accepted(accept_language), LANGUAGES, sep="-")
        except (ValueError, TypeError):  # Babel on a tag it cannot split
            best = None
        if best in LANGUAGES:
            return best
    return default if default in LANGUAGES else LANGUAGES[0]


def language(request: web.Request) -> str:
    """The language chosen for `request` (chosen once, then kept on the request)."""
    if CHOSEN not in request:
        request[CHOSEN] = choose(
            request.cookies.get(COOKIE),
            request.headers.get("Accept-Language"),
            request.app.get(DEFAULT, LANGUAGES[0]),
        )
    return request[CHOSEN]


def safe_next(target: str | None) -> str:
    """A path on this site to go back to: anything with a scheme or host (`//evil.example`,
    `https://…`, `/\\evil`) or not starting with "/" is `/`."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(c in target for c in "\r\n\\"):
        return "/"
    return target


async def switch(request: web.Request) -> web.StreamResponse:
    """`GET /lang?to=ko&next=/block/…`: keep the choice in the cookie and go back (to a path
    of this site only). An unknown language changes nothing."""
    to = request.query.get("to", "")
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    if to in LANGUAGES:
        response.set_cookie(
            COOKIE, to, max_age=365 * 86400, path="/", httponly=True, samesite="Lax"
        )
    raise response


CURRENT: ContextVar[str] = ContextVar("pybtc_lang", default=LANGUAGES[0])
"""The language of the page being rendered: each request runs in its own task, so setting it
in a middleware reaches the templates' callables without touching the shared environment."""
HERE: ContextVar[str] = ContextVar("pybtc_here", default="/")


def enter(request: web.Request) -> None:
    """Make the rest of this request's task render in its language."""
    CURRENT.set(language(request))
    HERE.set(request.path_qs)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    enter(request)
    return await handler(request)


def install(app: web.Application, env: jinja2.Environment, default: str) -> None:
    """Jinja2's i18n extension on `env` (newstyle gettext: `_()` and `{% trans %}` escape and
    format like the rest) with callables that follow the request's language, `page_lang()`
    and `page_path()` for every template, and the `/lang` switch."""
    app[DEFAULT] = default
    for lang in LANGUAGES:  # at start: a broken catalog stops the service, not a page
        translations(lang)
    app.middlewares.append(middleware)
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]  # added by the extension
        gettext, ngettext, newstyle=True
    )
    env.globals["page_lang"] = CURRENT.get
    env.globals["page_path"] = HERE.get
    env.globals["languages"] = LANGUAGE_NAMES
    app.router.add_get("/lang", switch)


def gettext(message: str) -> str:
    """`message` in the language of the page being rendered (for text made in Python)."""
    return translations(CURRENT.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(CURRENT.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:  # noqa: N802 - the name Babel's extractor looks for
    """Marks a message for the catalog where it is defined; `gettext` translates it later."""
    return message


def number(value: object, lang: str) -> str:
    """A whole number with the locale's grouping ("12,345"); "?" for anything else."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "?"
    return format_decimal(value, locale=Locale.parse(lang))


def moment(timestamp: int, lang: str) -> str:
    """A unix time in UTC, as the locale writes it (English: "2026-12-08 00:16:01 UTC")."""
    at = datetime.fromtimestamp(timestamp, UTC)
    if lang == LANGUAGES[0]:
        return at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return format_datetime(at, "medium", tzinfo=UTC, locale=Locale.parse(lang)) + " UTC"


def age(seconds: int, lang: str) -> str:
    """How long ago (`seconds` > 0) or ahead (< 0) in a language other than English, with
    Babel ("3분 전", "20초 후"); under 5 s "just now" in the locale's words."""
    if abs(seconds) < 5:
        return translations(lang).gettext("just now")
    return format_timedelta(
        timedelta(seconds=-seconds), add_direction=True, locale=Locale.parse(lang)
    )

"""CSRF protection for the wallet: a double-submit token on every state-changing request.

The token is random, kept in the `pybtc_csrf` cookie (SameSite=Strict, HttpOnly) and handed to
pages in `<meta name="csrf-token">` (and to scripts by `GET /api/csrf`). A POST must carry the
same value in the `X-CSRF-Token` header; another site can neither read the cookie nor set the
header (a cross-site request with a custom header needs a CORS preflight, which this service
never grants). Requests whose `Origin` is not one of the wallet's own are refused too: its
allowed host names on one of the node's ports or the request's own (`AllowedHosts.own_origin`),
never simply the request's Host header, which a DNS-rebinding page chooses.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from services.common.origins import GUARD
from services.common.web import Handler, ServiceError

COOKIE = "pybtc_csrf"
HEADER = "X-CSRF-Token"
TOKEN = web.RequestKey("csrf_token", str)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(request: web.Request) -> str:
    """This client's token (a new one is set as a cookie on the way out)."""
    return request[TOKEN]


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cookie = request.cookies.get(COOKIE, "")
    valid_cookie = len(cookie) == 43 and cookie.replace("-", "").replace("_", "").isalnum()
    if request.method not in SAFE_METHODS:
        origin = request.headers.get("Origin")
        allowed = request.app[GUARD].allowed
        if origin is not None and not allowed.own_origin(origin, request.host):
            raise ServiceError(403, "csrf", "requests from another site are refused")
        sent = request.headers.get(HEADER, "")
        if not valid_cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
            raise ServiceError(
                403,
                "csrf",
                f"missing or wrong {HEADER} header: get a token from GET /api/csrf (it sets "
                f"the {COOKIE} cookie) and send it back in the header",
            )
        if request.content_type != "application/json":
            raise ServiceError(415, "unsupported-media-type", "send the body as application/json")
    token = cookie if valid_cookie else secrets.token_urlsafe(32)
    request[TOKEN] = token
    response = await handler(request)
    if not valid_cookie:
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response

"""How `pybtc wallet` talks to a node's ledger and wallet service: the standard library's urllib,
JSON, a timeout, a cap on the reply, no redirects, no proxy for loopback; every network error
and every refusal (`{"error", "reason"}`) becomes one clear `click.ClickException` line.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from http.cookies import CookieError, SimpleCookie
from typing import Any

import click

from services.common.settings import is_loopback_host

TIMEOUT = 10.0
MAX_REPLY = 4 * 1024 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is then answered as it is: a refusal, never followed


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body (None when it was not JSON) and headers."""

    status: int
    body: Any
    headers: Any


@dataclass(frozen=True)
class Remote:
    """A pyBTC service at `base_url`; `what` and `option` name it in error messages."""

    base_url: str
    what: str
    option: str

    @classmethod
    def at(cls, url: str, what: str, option: str) -> Remote:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise click.ClickException(f"{option}: {url!r} is not an http:// or https:// URL")
        return cls(url.rstrip("/"), what, option)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> Reply:
        """One request; any HTTP status is a Reply, a network failure a ClickException."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310 - scheme checked in `at`
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({} if is_loopback_host(host) else None), _NoRedirect()
        )
        try:
            try:
                with opener.open(request, timeout=timeout) as response:
                    return Reply(response.status, _json(response.read(MAX_REPLY)), response.headers)
            except urllib.error.HTTPError as exc:
                with exc:
                    return Reply(exc.code, _json(exc.read(MAX_REPLY)), exc.headers)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._timed_out(timeout) from None
            detail = getattr(exc.reason, "strerror", None) or str(exc.reason)
            raise click.ClickException(
                f"cannot reach {self.what} at {self.base_url}: {detail} "
                f"(is it running? give another with {self.option})"
            ) from None
        except TimeoutError:
            raise self._timed_out(timeout) from None
        except (HTTPException, OSError) as exc:
            raise click.ClickException(
                f"the connection to {self.what} at {self.base_url} failed: {exc!r}"
            ) from None

    def get(self, path: str) -> Any:
        """GET a JSON object that must come back 200."""
        return self.expect(self.call("GET", path), 200, f"GET {path}")

    def expect(self, reply: Reply, status: int, doing: str) -> Any:
        """The reply's body when its status is `status`; otherwise the refusal, as an error."""
        if reply.status == status and isinstance(reply.body, dict):
            return reply.body
        if reply.status == status:
            raise click.ClickException(
                f"{self.what} at {self.base_url} answered {doing} with something that is not "
                "a JSON object (is it a pyBTC service?)"
            )
        raise click.ClickException(self.refusal(reply, doing))

    def refusal(self, reply: Reply, doing: str) -> str:
        body = reply.body
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            reason = printable(str(body.get("reason", "?")))
            return f"{self.what} refused {doing}: {printable(body['error'])} ({reason})"
        return f"{self.what} at {self.base_url} answered {doing} with HTTP {reply.status}"

    def _timed_out(self, timeout: float) -> click.ClickException:
        return click.ClickException(
            f"{self.what} at {self.base_url} did not answer within {timeout:.0f} s"
        )


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def printable(text: str, limit: int = 500) -> str:
    """Text from a server, safe to print: no control characters (no terminal escapes)."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def set_cookie_value(headers: Any, name: str) -> str | None:
    for value in headers.get_all("Set-Cookie") or []:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value)
        except CookieError:
            continue
        if name in jar:
            return jar[name].value
    return None


def retry_after(value: str | None) -> str:
    if value is None or not value.strip().isdigit():
        return f"after {value}" if value else "later"
    seconds = int(value)
    if seconds < 90:
        return f"in {seconds} seconds"
    if seconds < 90 * 60:
        return f"in {round(seconds / 60)} minutes"
    return f"in {seconds / 3600:.1f} hours"


CSRF_COOKIE = "pybtc_csrf"


def faucet_request(service: Remote, body: dict[str, Any], operator_token: str) -> Any:
    """POST /api/faucet to the wallet service `service` (its CSRF token fetched first, the
    operator token sent when given): the 201 answer, else one clear ClickException."""
    reply = service.call("GET", "/api/csrf")
    token = service.expect(reply, 200, "GET /api/csrf").get("token")
    if not isinstance(token, str) or not token:
        raise click.ClickException("the wallet service gave no CSRF token")
    cookie = set_cookie_value(reply.headers, CSRF_COOKIE) or token
    reply = service.call(
        "POST",
        "/api/faucet",
        body,
        {"X-CSRF-Token": token, "Cookie": f"{CSRF_COOKIE}={cookie}"}
        | ({"Authorization": f"Bearer {operator_token}"} if operator_token else {}),
    )
    if reply.status == 429:
        wait = retry_after(reply.headers.get("Retry-After"))
        raise click.ClickException(f"the faucet paid recently; try again {wait}")
    return service.expect(reply, 201, "the faucet request")

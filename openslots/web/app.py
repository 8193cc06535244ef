"""The patient pages behind the links in our messages: claim (or decline) an offered slot, and
unsubscribe. Same functions as the CLI (`openslots.api`); no SQL here.

Rules every response keeps, whatever happens: a GET changes nothing (mail scanners and link
previews open links before the patient does); `Cache-Control: no-store`, a Content-Security-
Policy with `frame-ancestors 'none'` and `Referrer-Policy: no-referrer` (the token must not
reach another site); the access log carries the path without the token; an unexpected error is
a 503 page, never a 500 with a traceback; claims are rate-limited per token and per address.

Example::

    import uvicorn
    from openslots.web import create_app
    uvicorn.run(create_app(), host="127.0.0.1", port=8000, access_log=False)
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from openslots import api
from openslots.errors import ConfigurationError, InvalidToken
from openslots.web._limits import RateLimiter, hit_all

ACCESS_LOG = logging.getLogger("openslots.web.access")
ERROR_LOG = logging.getLogger("openslots.web")

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
_TOKEN_PATH = re.compile(r"^/(claim|unsubscribe)/[^/]+")
_UNAVAILABLE = "This appointment is no longer available"


def log_path(path: str) -> str:
    """The path as the access log writes it: the token replaced, no query string.

    >>> log_path("/claim/abc.def/decline")
    '/claim/{token}/decline'
    """
    return _TOKEN_PATH.sub(r"/\1/{token}", path)


def _is_one_click(content_type: str, body: bytes) -> bool:
    r"""RFC 8058's body, urlencoded or (as the RFC also allows) one multipart/form-data field.

    >>> _is_one_click("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click")
    True
    >>> part = b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click'
    >>> _is_one_click("multipart/form-data; boundary=x", b"--x\r\n" + part + b"\r\n--x--")
    True
    """
    if content_type.startswith("multipart/form-data"):
        return b'name="List-Unsubscribe"' in body and b"\r\n\r\nOne-Click\r\n" in body
    fields = parse_qs(body.decode("utf-8", "replace"))
    return fields.get("List-Unsubscribe") == ["One-Click"]


def create_app(
    *,
    token_limit: int = 5,
    address_limit: int = 20,
    window_seconds: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The app `openslots web` serves. Claims, declines and unsubscribes are limited to
    `token_limit` per token and `address_limit` per client address in any `window_seconds`;
    `clock` is injectable so tests move time instead of sleeping."""
    app = FastAPI(
        title="openslots", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
    pages = Environment(
        loader=PackageLoader("openslots.web", "templates"),
        autoescape=select_autoescape(default=True),
    )
    per_token = RateLimiter(token_limit, window_seconds, clock)
    per_address = RateLimiter(address_limit, window_seconds, clock)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    def page(request: Request, name: str, status: int = 200, **variables: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        html = pages.get_template(name).render(root=root, **variables)
        return HTMLResponse(html, status_code=status)

    def message(request: Request, status: int, title: str, detail: str = "") -> HTMLResponse:
        return page(request, "message.html", status, title=title, detail=detail)

    def limited(request: Request, token: str) -> Response | None:
        """429 when this token or this address used up its allowance, else None (counted)."""
        address = request.client.host if request.client else "unknown"
        token_key = hashlib.sha256(token.encode()).hexdigest()[:32]  # no token kept in memory
        if hit_all([(per_token, token_key), (per_address, address)]):
            return None
        wait = max(per_token.retry_after(token_key), per_address.retry_after(address), 1)
        response = message(request, 429, "Too many tries", "Please wait a minute and try again.")
        response.headers["Retry-After"] = str(wait)
        return response

    def refused(request: Request, exc: Exception) -> HTMLResponse:
        """A link that cannot be used: expired (409), altered or malformed (400), unknown (404)."""
        if isinstance(exc, InvalidToken) and exc.reason == "expired":
            return message(request, 409, _UNAVAILABLE, "This link has expired.")
        if isinstance(exc, InvalidToken):
            return message(request, 400, "This link is not valid", "Please use the link exactly "
                           "as it arrived in your message.")  # fmt: skip
        return message(request, 404, "This link is not known", "It may be out of date.")

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # never a 500 with a traceback: the class name only
            ERROR_LOG.error("%s %s failed (%s)", request.method, log_path(request.url.path),
                            type(exc).__name__)  # fmt: skip
            title = "Please try again in a few minutes"
            response = message(request, 503, title, "The service is not available right now.")
        for name, value in HEADERS.items():
            response.headers[name] = value
        ACCESS_LOG.info(
            '%s "%s %s" %d %.1fms',
            request.client.host if request.client else "-",
            request.method,
            log_path(request.url.path),
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    @app.exception_handler(ConfigurationError)
    async def not_ready(request: Request, exc: ConfigurationError) -> Response:
        ERROR_LOG.error("not configured: %s", exc)  # schema not current, no secret key...
        return message(request, 503, "Please try again in a few minutes")

    @app.get("/claim/{token}")
    def claim_page(request: Request, token: str) -> Response:
        """The offer, with "Claim this appointment" and "Not for me"; a GET claims nothing."""
        try:
            offer = api.offer_page(token)
        except (InvalidToken, api.NotFoundError) as exc:
            return refused(request, exc)
        return page(request, "claim.html", offer=offer, state=offer["state"], token=token)

    def answer_offer(
        request: Request, token: str, act: Callable[[str], dict[str, Any]], success: str
    ) -> Response:
        """A POST on a claim link: limited, the link checked, `act` called; 200 when its
        result is `success`, else 409 with the page's state (400/404 for a bad link)."""
        if (too_many := limited(request, token)) is not None:
            return too_many
        try:
            offer = api.offer_page(token)
        except (InvalidToken, api.NotFoundError) as exc:
            return refused(request, exc)
        result = act(token)["result"]
        if result == "invalid":
            return refused(request, api.NotFoundError("no offer"))
        state = {"won": "won", "declined": "declined"}.get(result, "unavailable")
        status = 200 if result == success else 409
        return page(request, "claim.html", status, offer=offer, state=state, token=token)

    @app.post("/claim/{token}")
    def claim(request: Request, token: str) -> Response:
        """Claim through the same function as `openslots slots claim`: 200 it's yours, 409 no
        longer available (taken, closed, expired; never who claimed), 400/404 a bad link."""
        return answer_offer(request, token, api.claim_slot, "won")

    @app.post("/claim/{token}/decline")
    def decline(request: Request, token: str) -> Response:
        """ "Not for me": final for this patient and slot, idempotent, tells nothing of others;
        409 when this link's claim already won or it expired."""
        return answer_offer(request, token, api.decline_offer, "declined")

    @app.post("/claim/{token}/viewed")
    def viewed(request: Request, token: str) -> Response:
        """The claim page's beacon (its script; a bare GET records nothing): 204."""
        try:
            api.mark_offer_viewed(token)
        except InvalidToken:
            return Response(status_code=400)
        except api.NotFoundError:
            return Response(status_code=404)
        return Response(status_code=204)

    @app.get("/unsubscribe/{token}")
    def unsubscribe_page(request: Request, token: str) -> Response:
        """A confirmation page; the POST unsubscribes."""
        title = "Unsubscribe from this practice's messages?"
        return page(request, "unsubscribe.html", title=title, token=token)

    @app.post("/unsubscribe/{token}")
    async def unsubscribe(request: Request, token: str) -> Response:
        """Opt out (idempotent). The body `List-Unsubscribe=One-Click` (RFC 8058, sent by a
        mail client's unsubscribe button) gets a plain answer, no page."""
        if (too_many := limited(request, token)) is not None:
            return too_many
        one_click = _is_one_click(request.headers.get("content-type", ""), await request.body())
        try:
            await run_in_threadpool(api.unsubscribe, token)
        except (InvalidToken, api.NotFoundError) as exc:
            if one_click:
                return PlainTextResponse("not unsubscribed", 400 if isinstance(
                    exc, InvalidToken) else 404)  # fmt: skip
            if isinstance(exc, InvalidToken) and exc.reason == "expired":
                return message(request, 400, "This link has expired")
            return refused(request, exc)
        if one_click:
            return PlainTextResponse("unsubscribed")
        return message(
            request, 200, "You are unsubscribed", "This practice will not contact you again."
        )

    return app

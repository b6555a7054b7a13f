"""The web app's browser protections: security headers on every answer, the CSRF checks of
cookie-authenticated changes, and the request body size limit.

- :class:`Guard` (ASGI middleware): refuses a body over ``MAX_BODY_BYTES`` with 413 before the
  application reads it (a larger ``Content-Length`` at once; a chunked body as soon as it has
  passed the limit), and adds :data:`HEADERS` and the :data:`CSP` to every answer that does not
  set its own (``/docs`` sets a CSP naming its one inline script by hash; share links keep
  ``Referrer-Policy: no-referrer``). ``Strict-Transport-Security`` only when the request came
  over https (as uvicorn sees it: ``X-Forwarded-Proto`` counts only from the proxies the
  ``http_trusted_proxies`` setting names).
- CSRF: a change (POST, PUT, PATCH, DELETE) authenticated by the session cookie must come from
  this origin (``Sec-Fetch-Site: same-origin`` and ``Origin`` when the browser sends them) and
  carry ``X-CSRF-Token`` equal to :func:`csrf_token` of the session, which the page reads from
  the ``triage_csrf`` cookie (not HttpOnly; set at login). API tokens are exempt: a browser
  never sends them on its own. The login checks the origin only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

MAX_BODY_BYTES = 64 * 1024
CSRF_COOKIE = "triage_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
HSTS = "max-age=31536000"  # a year, seconds
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "cross-origin-opener-policy": "same-origin",
}


def docs_csp(page: bytes) -> str:
    """The CSP of the Swagger UI page ``page``: :data:`CSP` with its inline scripts allowed by
    their SHA-256 and the inline styles Swagger UI writes."""
    inline = [part.split("</script>")[0] for part in page.decode().split("<script>")[1:]]
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
                      for script in inline)
    return (CSP.replace("script-src 'self'", f"script-src 'self' {hashes}")
            .replace("style-src 'self'", "style-src 'self' 'unsafe-inline'"))


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 of ``csrf`` keyed by the session id (hex), so it
    cannot be made without the HttpOnly session cookie."""
    return hmac.new(session_id.encode(), b"csrf", hashlib.sha256).hexdigest()


def check_origin(request: Request, public_url: str) -> None:
    """403 when the browser says the request comes from another site: ``Sec-Fetch-Site`` other
    than ``same-origin``, or an ``Origin`` that is neither this server's (its scheme and Host)
    nor ``public_url``'s. Clients that send neither (not browsers) pass."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is None:
        return
    allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    if public_url:
        parts = urlsplit(public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}".lower())
    if origin.lower() not in allowed:
        raise HTTPException(403, f"cross-origin request refused (Origin: {origin[:100]})")


def check_csrf(request: Request, session_id: str, public_url: str) -> None:
    """403 unless a change authenticated by ``session_id`` comes from this origin and carries
    its :func:`csrf_token` in ``X-CSRF-Token``."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request, public_url)
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(session_id).encode()):
        raise HTTPException(403, "missing or wrong CSRF token: send the triage_csrf cookie's value "
                                 "as X-CSRF-Token (or use an API token)")


class Guard:
    """ASGI middleware: the body size limit and the security headers (see the module)."""

    def __init__(self, app, max_body: int = MAX_BODY_BYTES):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        secure = scope.get("scheme") == "https"

        async def send_guarded(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name.encode(), value.encode()) for name, value in HEADERS.items()
                         if name.encode() not in present]
                if secure:
                    extra.append((b"strict-transport-security", HSTS.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await _too_large(send_guarded, self.max_body)
        if scope["method"] in SAFE_METHODS and length is None:
            return await self.app(scope, receive, send_guarded)
        body, size, more = [], 0, True
        while more:  # at most max_body bytes are held: then replayed to the application
            message = await receive()
            if message["type"] != "http.request":
                return
            body.append(message.get("body", b""))
            size += len(body[-1])
            if size > self.max_body:
                return await _too_large(send_guarded, self.max_body)
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}]

        async def receive_replayed():
            return replay.pop() if replay else await receive()

        await self.app(scope, receive_replayed, send_guarded)


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit // 1024} KiB refused"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

"""The page's locks: the login token, the session cookie, the security headers.

With ``[web] token_env`` set, every page but the login form (and its stylesheet) needs the
session cookie, which a person gets by entering the token once. The cookie holds an HMAC of
the token, not the token: it is HttpOnly (no script reads it), SameSite=Strict (no other site
sends it), Secure over HTTPS, and changing the token logs everyone out. Comparisons are
constant-time. Every response carries the headers below: a Content-Security-Policy that allows
no inline script and nothing from another origin, no MIME sniffing, no framing.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "SECURITY_HEADERS",
    "SecurityHeaders",
    "local_path",
    "session_value",
    "token_matches",
    "valid_session",
]

COOKIE = "dialer_session"
#: how long a login lasts (the token's change ends every login sooner)
COOKIE_MAX_AGE_S = 30 * 24 * 3600

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``: proof of it, not the token itself."""
    return hmac.new(token.encode(), b"dialer web session v1", hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def valid_session(cookie: str | None, token: str) -> bool:
    return cookie is not None and hmac.compare_digest(
        cookie.encode(), session_value(token).encode()
    )


def local_path(target: str | None) -> str:
    """Where to go after the login: a path of this site only (never //host or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class SecurityHeaders:
    """ASGI middleware: the security headers on every response, errors and files included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)

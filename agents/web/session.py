"""Reviewer sessions for the browser: a signed cookie, and a CSRF token for every form that writes.

Browsers cannot send ``Authorization: Bearer`` from a link, so the workbench signs people in
with a form (`agents.web.workbench`): the reviewer's name, and ``REFINERY_API_TOKEN`` when the
worker has one. What it hands back is a cookie holding ``name|issued|nonce|signature``, signed
with HMAC-SHA256 under a key derived from the API token (every worker sharing the token accepts
it; changing the token signs everybody out). The cookie is ``HttpOnly`` (scripts cannot read
it) and ``SameSite=Strict`` (other sites' pages never send it).

Every form that writes carries a CSRF token, an HMAC of the session's nonce, and is refused
without it: a request forged by another site has neither the cookie nor the token.

>>> sessions = Sessions("s3cret")
>>> cookie = sessions.issue("ann", now=1000.0)
>>> session = sessions.read(cookie, now=1001.0)
>>> session.reviewer, sessions.csrf_ok(session, sessions.csrf(session)), sessions.csrf_ok(session, "forged")
('ann', True, False)
>>> sessions.read(cookie.replace("ann", "bob"), now=1001.0) is None  # a changed cookie is refused
True
>>> sessions.read(cookie, now=1000.0 + SESSION_SECONDS + 1) is None  # and so is an expired one
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from urllib.parse import quote, unquote

__all__ = ["COOKIE", "SESSION_SECONDS", "Session", "Sessions", "valid_reviewer"]

COOKIE = "refinery_session"
#: How long a sign-in lasts.
SESSION_SECONDS = 12 * 3600
_MAX_NAME = 64


@dataclasses.dataclass(frozen=True)
class Session:
    """A signed-in reviewer: their name, when they signed in, and the nonce their CSRF token signs."""

    reviewer: str
    issued: float
    nonce: str


def valid_reviewer(name: str) -> str | None:
    """The reviewer name, trimmed, or None when it is empty or too long.

    >>> valid_reviewer("  Ann  "), valid_reviewer(""), valid_reviewer("x" * 65)
    ('Ann', None, None)
    """
    name = " ".join(name.split())
    return name if 0 < len(name) <= _MAX_NAME else None


class Sessions:
    """Issues and checks session cookies and CSRF tokens.

    Parameters
    ----------
    secret
        ``REFINERY_API_TOKEN`` when set; otherwise a random secret of this process (sessions then
        last until the worker restarts).
    """

    def __init__(self, secret: str | None) -> None:
        self.open = not secret  # no API token: anyone may read, a name is enough to review
        self._key = hashlib.sha256(b"refinery-session\0" + (secret or secrets.token_hex(32)).encode("utf-8")).digest()

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode("utf-8"), hashlib.sha256).hexdigest()

    def issue(self, reviewer: str, *, now: float) -> str:
        """A cookie value for ``reviewer`` signed in at ``now``."""
        payload = f"{quote(reviewer, safe='')}|{int(now)}|{secrets.token_hex(8)}"
        return f"{payload}|{self._sign(payload)}"

    def read(self, cookie: str | None, *, now: float) -> Session | None:
        """The session a cookie value carries, or None when it is missing, forged or expired."""
        if not cookie or cookie.count("|") != 3:
            return None
        payload, signature = cookie.rsplit("|", 1)
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        name, issued, nonce = payload.split("|")
        try:
            issued_at = float(issued)
        except ValueError:
            return None
        if not 0 <= now - issued_at <= SESSION_SECONDS:
            return None
        return Session(reviewer=unquote(name), issued=issued_at, nonce=nonce)

    def csrf(self, session: Session) -> str:
        """The CSRF token of ``session``'s forms."""
        return self._sign(f"csrf|{session.nonce}")

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        return session is not None and bool(token) and hmac.compare_digest(str(token), self.csrf(session))

    def cookie_header(self, value: str, *, max_age: int = SESSION_SECONDS) -> str:
        """The ``Set-Cookie`` header value (``max_age=0`` signs out)."""
        return f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"

"""Sign-in sessions, kept on the server: the browser holds only a random session id (cookie:
HttpOnly, SameSite=Strict, Secure when the console is served over https), and every form carries
the session's CSRF token (a synchronizer token), compared in constant time.

A visitor gets an anonymous session at the sign-in page, so the sign-in form is protected too;
signing in replaces it with a new session id (an id known before sign-in is worth nothing after).
The person's credential stays in the session, in memory only: the console votes with it on the
review API, so the vote is the person's own. It is never written, logged or shown.

Pure of I/O: the clock is passed in.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

COOKIE = "signoff_console"
_ID_BYTES = 32


@dataclass(frozen=True)
class Session:
    id: str = field(repr=False)
    csrf: str = field(repr=False)
    expires: datetime
    person: str | None = None  # None: not signed in (the sign-in page's session)
    roles: frozenset[str] = frozenset()
    credential: str | None = field(default=None, repr=False)  # the person's bearer token, for the review API
    via: str = ""  # what proved it, for the log ("token <id>", "oidc"): never a secret

    @property
    def signed_in(self) -> bool:
        return self.person is not None and self.credential is not None


class Sessions:
    def __init__(self, lifetime: timedelta, max_sessions: int = 10_000) -> None:
        self.lifetime, self.max_sessions = lifetime, max_sessions
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def anonymous(self, now: datetime) -> Session:
        """A session for the sign-in form (short: a quarter of an hour at most)."""
        return self._add(Session(id=_new(), csrf=_new(), expires=now + min(self.lifetime, timedelta(minutes=15))))

    def sign_in(self, previous: Session | None, person: str, roles: frozenset[str], credential: str, via: str,
                now: datetime) -> Session:
        """A new session (new id, new CSRF token) for `person`; the previous one ends."""
        if previous is not None:
            self.end(previous.id)
        return self._add(Session(id=_new(), csrf=_new(), expires=now + self.lifetime, person=person, roles=roles,
                                 credential=credential, via=via))

    def get(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session of this id; None when unknown, malformed or expired (then it ends)."""
        if not session_id or len(session_id) > 128:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if now >= session.expires:
            self.end(session_id)
            return None
        return session

    def end(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def _add(self, session: Session) -> Session:
        self._by_id[session.id] = session
        while len(self._by_id) > self.max_sessions:
            self._by_id.popitem(last=False)  # the oldest first
        return session

    def __len__(self) -> int:
        return len(self._by_id)


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether a form's CSRF token is this session's own (constant time; never another session's)."""
    if session is None or not token or len(token) > 128:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())


def cookie_args(session: Session, secure: bool) -> dict[str, object]:
    """The Set-Cookie attributes of a session (FastAPI's `response.set_cookie(**...)`)."""
    return {"key": COOKIE, "value": session.id, "httponly": True, "samesite": "strict", "secure": secure,
            "path": "/", "max_age": None}


def _new() -> str:
    return secrets.token_urlsafe(_ID_BYTES)

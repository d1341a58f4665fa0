"""Sign-in sessions, kept on the server: the browser holds only a random session id (cookie:
HttpOnly, SameSite=Strict, Secure and named `__Host-...` when the console is served over https,
so no sibling host can set it), and every form carries the session's CSRF token (a synchronizer
token), compared in constant time.

The sign-in form is protected too, without a session: its cookie is an issue time and a random
nonce, and its CSRF token that cookie's HMAC under a key of this process, valid a quarter of an
hour. A visitor who has not signed in costs the server nothing, so however many sign-in pages
anyone loads, no signed-in session ends for them (only signed-in people, who proved a credential,
take a place among `max_sessions`). Signing in makes a new session id: an id known before sign-in
is worth nothing after.

The person's credential stays in the session, in memory only: the console votes with it on the
review API, so the vote is the person's own. It is never written, logged or shown.

Pure of I/O: the clock is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

COOKIE = "signoff_console"
HOST_COOKIE = "__Host-signoff_console"  # over https: Secure, Path=/, no Domain (the browser enforces it)
SIGN_IN_FORM_LIFETIME = timedelta(minutes=15)
MAX_NOTE = 200
_ID_BYTES = 32
_FORM_PREFIX = "f."


@dataclass(frozen=True)
class Session:
    id: str = field(repr=False)
    csrf: str = field(repr=False)
    expires: datetime
    person: str | None = None
    roles: frozenset[str] = frozenset()
    credential: str | None = field(default=None, repr=False)  # the person's bearer token, for the review API
    via: str = ""  # what proved it, for the log ("token <id>", "oidc"): never a secret

    @property
    def signed_in(self) -> bool:
        return self.person is not None and self.credential is not None


class Sessions:
    def __init__(self, lifetime: timedelta, max_sessions: int = 10_000) -> None:
        self.lifetime, self.max_sessions = lifetime, max_sessions
        self._by_id: OrderedDict[str, Session] = OrderedDict()  # oldest first: the same lifetime for all
        self._notes: dict[str, tuple[str, str]] = {}  # session id -> (what it is about, one-time message)
        self._key = secrets.token_bytes(32)  # signs sign-in forms; a restart voids the open ones

    # -- the sign-in form ------------------------------------------------------------------------

    def sign_in_form(self, now: datetime) -> tuple[str, str]:
        """(cookie value, CSRF token) of a sign-in form: nothing is kept here."""
        value = f"{_FORM_PREFIX}{int(now.timestamp())}.{_new()}"
        return value, self._mac(value)

    def sign_in_form_ok(self, value: str | None, token: str | None, now: datetime) -> bool:
        """Whether `token` is the CSRF token of the sign-in form whose cookie is `value`, issued
        less than a quarter of an hour ago (constant time)."""
        if not value or not token or len(value) > 128 or len(token) > 128 or not value.startswith(_FORM_PREFIX):
            return False
        issued = value[len(_FORM_PREFIX):].split(".", 1)[0]
        if not issued.isdigit() or not 0 <= now.timestamp() - int(issued) < SIGN_IN_FORM_LIFETIME.total_seconds():
            return False
        return hmac.compare_digest(self._mac(value).encode(), token.encode())

    def _mac(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    # -- signed-in sessions ----------------------------------------------------------------------

    def sign_in(self, previous: Session | None, person: str, roles: frozenset[str], credential: str, via: str,
                now: datetime) -> Session:
        """A new session (new id, new CSRF token) for `person`; the previous one ends. Past
        `max_sessions` live sessions, the oldest ends first."""
        if previous is not None:
            self.end(previous.id)
        self._sweep(now)
        session = Session(id=_new(), csrf=_new(), expires=now + self.lifetime, person=person, roles=roles,
                          credential=credential, via=via)
        self._by_id[session.id] = session
        while len(self._by_id) > self.max_sessions:
            self.end(next(iter(self._by_id)))
        return session

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
        self._notes.pop(session_id, None)

    def _sweep(self, now: datetime) -> None:
        """End the expired sessions (the oldest are first: every session lives as long)."""
        while self._by_id:
            oldest = next(iter(self._by_id.values()))
            if now < oldest.expires:
                return
            self.end(oldest.id)

    # -- one-time messages (what the page after a redirect says happened) -------------------------

    def note(self, session: Session, about: str, text: str) -> None:
        if session.id in self._by_id:
            self._notes[session.id] = (about, text[:MAX_NOTE])

    def take_note(self, session: Session, about: str) -> str | None:
        """The session's message about `about`, once; None when there is none (or it is about
        something else: it stays for its own page)."""
        found = self._notes.get(session.id)
        if found is None or found[0] != about:
            return None
        del self._notes[session.id]
        return found[1]

    def __len__(self) -> int:
        return len(self._by_id)


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether a form's CSRF token is this session's own (constant time; never another session's)."""
    if session is None or not token or len(token) > 128:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())


def cookie_name(secure: bool) -> str:
    return HOST_COOKIE if secure else COOKIE


def cookie_args(value: str, secure: bool, max_age: int | None = None) -> dict[str, object]:
    """The Set-Cookie attributes of a session id or a sign-in form's cookie (FastAPI's
    `response.set_cookie(**...)`); path "/" and no domain, as `__Host-` requires."""
    return {"key": cookie_name(secure), "value": value, "httponly": True, "samesite": "strict", "secure": secure,
            "path": "/", "max_age": max_age}


def _new() -> str:
    return secrets.token_urlsafe(_ID_BYTES)

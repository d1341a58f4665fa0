"""Sign-in sessions, kept on the server: the browser holds only a random session id (cookie:
HttpOnly, SameSite=Strict, Secure and named `__Host-...` when the console is served over https,
so no sibling host can set it), and every form carries the session's CSRF token (a synchronizer
token), compared in constant time.

Any replica takes any request: the sessions live in a store every replica opens
(session_store.py: PostgreSQL, or an SQLite file on one machine; this process's memory when there
is only one replica), and the key that signs sign-in forms and seals sessions is the console's
session key (CONSOLE_SESSION_KEY_FILE), the same in every replica. Server-side rather than
signed-and-encrypted cookie sessions: a credential may be 16 KiB (an OIDC token), more than a
cookie holds; signing out must end a session everywhere at once, which a cookie cannot promise
without a server-side list of ended ones; and `max_sessions` bounds what sign-ins cost.

The sign-in form is protected too, without a session: its cookie is an issue time and a random
nonce, and its CSRF token that cookie's HMAC under the form key, valid a quarter of an hour. A
visitor who has not signed in costs the server nothing, so however many sign-in pages anyone
loads, no signed-in session ends for them (only signed-in people, who proved a credential, take a
place among `max_sessions`). Signing in makes a new session id: an id known before sign-in is
worth nothing after.

The person's credential stays in the session: the console votes with it on the review API, so the
vote is the person's own. It is never logged or shown, and the store holds it sealed: each row is
AES-GCM under the session key, bound to the row's key (the SHA-256 of the session id: the
database holds no usable cookie), with the expiry inside, so a row edited, moved to another id or
given a later expiry opens to nothing. The two keys (form HMAC, sealing) are derived from the one
session key with HKDF, each for its own use.

The decisions and the cryptography here; the rows in session_store.py. The clock is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.console.session_store import KEY_BYTES, SessionStore

COOKIE = "signoff_console"
HOST_COOKIE = "__Host-signoff_console"  # over https: Secure, Path=/, no Domain (the browser enforces it)
SIGN_IN_FORM_LIFETIME = timedelta(minutes=15)
MAX_NOTE = 200
_ID_BYTES = 32
_FORM_PREFIX = "f."
_NONCE_BYTES = 12


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
    def __init__(self, lifetime: timedelta, max_sessions: int = 10_000, store: SessionStore | None = None,
                 key: bytes | None = None) -> None:
        """`key`: the session key every replica shares (32 bytes); None: one of this process, so a
        restart voids the open sign-in forms and sessions (one replica, sessions in memory)."""
        self.lifetime, self.max_sessions = lifetime, max_sessions
        self.store = store if store is not None else SessionStore()
        if key is None:
            if self.store.shared:
                raise ValueError("sessions other replicas read need the key they share: set CONSOLE_SESSION_KEY_FILE")
            key = secrets.token_bytes(KEY_BYTES)
        if len(key) != KEY_BYTES:
            raise ValueError(f"the console's session key must be {KEY_BYTES} bytes")
        self._form_key = _derive(key, b"signoff console sign-in form")
        self._seal = AESGCM(_derive(key, b"signoff console session seal"))

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
        return hmac.new(self._form_key, value.encode(), hashlib.sha256).hexdigest()

    # -- signed-in sessions ----------------------------------------------------------------------

    def sign_in(self, previous: Session | None, person: str, roles: frozenset[str], credential: str, via: str,
                now: datetime) -> Session:
        """A new session (new id, new CSRF token) for `person`; the previous one ends. Past
        `max_sessions` live sessions, the oldest ends first."""
        if previous is not None:
            self.end(previous.id)
        self.store.sweep(_micros(now))
        session = Session(id=_new(), csrf=_new(), expires=now + self.lifetime, person=person, roles=roles,
                          credential=credential, via=via)
        key = _row_key(session.id)
        self.store.put(key, _micros(session.expires), self._sealed(key, session))
        self.store.trim(self.max_sessions)
        return session

    def get(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session of this id; None when unknown, malformed, expired or tampered with
        (then it ends)."""
        if not session_id or len(session_id) > 128:
            return None
        key = _row_key(session_id)
        sealed = self.store.get(key, _micros(now))
        if sealed is None:
            return None
        session = self._opened(key, session_id, sealed)
        if session is None or now >= session.expires:
            self.store.delete(key)
            return None
        return session

    def end(self, session_id: str) -> None:
        self.store.delete(_row_key(session_id))

    def close(self) -> None:
        self.store.close()

    def _sealed(self, key: str, session: Session) -> str:
        """The session as the store keeps it: AES-GCM of everything but the id, bound to the row."""
        plain = json.dumps({"csrf": session.csrf, "expires": session.expires.isoformat(), "person": session.person,
                            "roles": sorted(session.roles), "credential": session.credential, "via": session.via})
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return base64.urlsafe_b64encode(nonce + self._seal.encrypt(nonce, plain.encode(), key.encode())).decode()

    def _opened(self, key: str, session_id: str, sealed: str) -> Session | None:
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            fields = json.loads(self._seal.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], key.encode()))
            return Session(id=session_id, csrf=fields["csrf"], expires=datetime.fromisoformat(fields["expires"]),
                           person=fields["person"], roles=frozenset(fields["roles"]), credential=fields["credential"],
                           via=fields["via"])
        except (InvalidTag, ValueError, KeyError, TypeError):  # another key, or the row was edited
            return None

    # -- one-time messages (what the page after a redirect says happened) -------------------------

    def note(self, session: Session, about: str, text: str) -> None:
        self.store.note(_row_key(session.id), about, text[:MAX_NOTE])

    def take_note(self, session: Session, about: str) -> str | None:
        """The session's message about `about`, once; None when there is none (or it is about
        something else: it stays for its own page)."""
        return self.store.take_note(_row_key(session.id), about)

    def __len__(self) -> int:
        return self.store.count()


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


def _row_key(session_id: str) -> str:
    """What the store keys a session by: its id's SHA-256, so the database holds no usable cookie."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)

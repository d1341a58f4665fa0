"""Two console replicas sharing one session store and one session key (CONSOLE_SESSION_KEY_FILE):
a session made on one is good on the other, a sign-in form from one signs in on the other, signing
out on one ends the session on both; a session edited in the database, expired or read with
another key is refused. Once on SQLite (replicas on one machine), once on PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.console.app import create_app
from services.console.session_store import SessionStore
from services.console.sessions import COOKIE, Sessions
from services.console.settings import ConsoleSettings
from shared.database import open_database
from tests import keys
from tests.component.people import People
from tests.component.test_console import Console, console_of, csrf_in
from tests.unit import factories as f


@dataclass
class Replicas:
    one: Console
    two: Console
    where: Path | str
    key_file: Path

    def settings(self, key_file: Path | None = None) -> ConsoleSettings:
        return replica_settings(self.one.people, self.where, key_file or self.key_file)


def replica_settings(people: People, where: Path | str, key_file: Path) -> ConsoleSettings:
    shared = {"sessions_db": where} if isinstance(where, Path) else {"database_url": where}
    return ConsoleSettings(trusted_keys=keys.keys().trust, kafka_security_protocol="PLAINTEXT",
                           session_key_file=key_file, **shared, **people.settings)


def write_key(path: Path) -> Path:
    path.write_text(secrets.token_urlsafe(32) + "\n")
    return path


@pytest.fixture
def replicas(tmp_path: Path, state_db: Path | str) -> Iterator[Replicas]:
    """Two consoles as two replicas would run them: each its own app and its own connection to
    the store, the same people, key and store."""
    key_file = write_key(tmp_path / "session-key")
    one = console_of(tmp_path / "one")
    people = one.people
    two_app = create_app(replica_settings(people, state_db, key_file))
    two_app.state.parts = one.client.app.state.parts  # type: ignore[attr-defined]
    one_app = create_app(replica_settings(people, state_db, key_file))
    one_app.state.parts = one.client.app.state.parts  # type: ignore[attr-defined]
    pair = Replicas(Console(TestClient(one_app, base_url="http://testserver"), people, one.api, one.pending_id,
                            one.settings),
                    Console(TestClient(two_app, base_url="http://testserver"), people, one.api, one.pending_id,
                            one.settings),
                    state_db, key_file)
    yield pair
    for console in (pair.one, pair.two):
        console.client.app.state.web.sessions.close()  # type: ignore[attr-defined]


def test_a_session_made_on_one_replica_is_good_on_the_other(replicas: Replicas) -> None:
    replicas.one.sign_in("alice")
    cookie = replicas.one.client.cookies[COOKIE]
    replicas.two.client.cookies.set(COOKIE, cookie)
    page = replicas.two.client.get(f"/reviews/{replicas.one.pending_id}", follow_redirects=False)
    assert page.status_code == 200 and "alice" in page.text
    # The CSRF token the other replica put in its form is the session's own: a vote goes through.
    csrf = csrf_in(replicas.two.client.get(f"/reviews/{replicas.one.pending_id}/confirm?decision=approve").text)
    replicas.one.client.post(f"/reviews/{replicas.one.pending_id}/vote",
                             data={"csrf": csrf, "decision": "approve", "confirmed": "yes", "reason": "fine"},
                             follow_redirects=False)
    assert [token for token, _ in replicas.one.api.votes] == [replicas.one.people.token("alice")]
    # ... and the one-time message the vote left is shown by whichever replica serves the next page, once.
    assert "approved (approved)" in replicas.two.client.get(f"/reviews/{replicas.one.pending_id}").text
    assert "approved (" not in replicas.one.client.get(f"/reviews/{replicas.one.pending_id}").text


def test_a_sign_in_form_from_one_replica_signs_in_on_the_other(replicas: Replicas) -> None:
    form = replicas.one.client.get("/signin")
    replicas.two.client.cookies.set(COOKIE, replicas.one.client.cookies[COOKIE])
    response = replicas.two.client.post("/signin", data={"credential": replicas.one.people.token("alice"),
                                                         "csrf": csrf_in(form.text)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/reviews"


def test_signing_out_on_one_replica_ends_the_session_on_both(replicas: Replicas) -> None:
    replicas.one.sign_in("alice")
    replicas.two.client.cookies.set(COOKIE, replicas.one.client.cookies[COOKIE])
    csrf = csrf_in(replicas.one.client.get(f"/reviews/{replicas.one.pending_id}/confirm?decision=approve").text)
    assert replicas.one.client.post("/signout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert replicas.two.client.get("/reviews", follow_redirects=False).status_code == 303


def test_a_replica_with_another_key_refuses_the_session_and_the_form(replicas: Replicas, tmp_path: Path) -> None:
    replicas.one.sign_in("alice")
    stranger = TestClient(create_app(replicas.settings(write_key(tmp_path / "other-key"))),
                          base_url="http://testserver")
    stranger.cookies.set(COOKIE, replicas.one.client.cookies[COOKIE])
    assert stranger.get("/reviews", follow_redirects=False).status_code == 303
    form = replicas.one.client.get("/signin")
    stranger.cookies.set(COOKIE, replicas.one.client.cookies[COOKIE])
    refused = stranger.post("/signin", data={"credential": replicas.one.people.token("alice"),
                                             "csrf": csrf_in(form.text)}, follow_redirects=False)
    assert refused.status_code == 403
    stranger.app.state.web.sessions.close()  # type: ignore[attr-defined]


def sessions_on(where: Path | str, key: bytes, lifetime: timedelta = timedelta(minutes=5)) -> Sessions:
    return Sessions(lifetime, store=SessionStore(where), key=key)


def test_a_session_edited_in_the_database_is_refused(state_db: Path | str) -> None:
    now, key = f.submitted().occurred_at, secrets.token_bytes(32)
    one, two = sessions_on(state_db, key), sessions_on(state_db, key)
    alice = one.sign_in(None, "alice", frozenset({"approver"}), "so_alice", "token a", now)
    bob = one.sign_in(None, "bob", frozenset({"approver", "operator"}), "so_bob", "token b", now)
    assert two.get(alice.id, now) == alice and two.get(bob.id, now) == bob
    db = open_database(state_db, "SELECT 1")
    try:
        # Bob's sealed row (an operator's) moved under Alice's id: it opens to nothing there.
        db.execute("UPDATE console_sessions SET sealed = (SELECT sealed FROM console_sessions WHERE id_hash = ?) "
                   "WHERE id_hash = ?", (_row(bob.id), _row(alice.id)))
        assert two.get(alice.id, now) is None
        # One character of Bob's sealed row changed.
        sealed = db.execute("SELECT sealed FROM console_sessions WHERE id_hash = ?", (_row(bob.id),)).fetchone()[0]
        flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
        db.execute("UPDATE console_sessions SET sealed = ? WHERE id_hash = ?", (flipped, _row(bob.id)))
        assert two.get(bob.id, now) is None
    finally:
        db.close()
        one.close()
        two.close()


def test_an_expired_session_is_refused_by_every_replica_even_with_a_later_expiry_written_in(
    state_db: Path | str
) -> None:
    now, key = f.submitted().occurred_at, secrets.token_bytes(32)
    one, two = sessions_on(state_db, key), sessions_on(state_db, key)
    alice = one.sign_in(None, "alice", frozenset({"approver"}), "so_alice", "token a", now)
    assert two.get(alice.id, now + timedelta(minutes=4)) == alice
    db = open_database(state_db, "SELECT 1")
    try:
        db.execute("UPDATE console_sessions SET expires = expires + ?", (3_600_000_000,))  # an hour later
        assert two.get(alice.id, now + timedelta(minutes=5)) is None  # the sealed expiry holds
        assert len(two) == 0  # and the row ended
    finally:
        db.close()
    carol = one.sign_in(None, "carol", frozenset({"approver"}), "so_carol", "token c", now)
    assert two.get(carol.id, now + timedelta(minutes=5)) is None  # the store's own check
    one.close()
    two.close()


def test_shared_sessions_need_the_shared_key(state_db: Path | str) -> None:
    with pytest.raises(ValueError, match="CONSOLE_SESSION_KEY_FILE"):
        Sessions(timedelta(minutes=5), store=SessionStore(state_db))


def test_a_bad_key_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    from services.console.session_store import read_session_key

    bad = tmp_path / "key"
    bad.write_text("too-short\n")
    with pytest.raises(ValueError, match="CONSOLE_SESSION_KEY_FILE: .* urlsafe base64 of 32"):
        read_session_key(bad)
    with pytest.raises(ValueError, match="CONSOLE_SESSION_KEY_FILE: cannot read"):
        read_session_key(tmp_path / "absent")
    good = write_key(tmp_path / "good")
    assert len(read_session_key(good)) == 32


def _row(session_id: str) -> str:
    import hashlib

    return hashlib.sha256(session_id.encode()).hexdigest()


def test_the_store_itself_finds_nothing_past_a_rows_expiry(state_db: Path | str) -> None:
    store = SessionStore(state_db)
    try:
        store.put("a" * 64, 1_000, "sealed")
        assert store.get("a" * 64, 999) == "sealed"
        assert store.get("a" * 64, 1_000) is None
        store.sweep(1_000)
        assert store.count() == 0
    finally:
        store.close()

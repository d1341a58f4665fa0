"""shared/database.py on a real PostgreSQL: a service outlives the server dropping its connection
(a restart, a failover): the statement that met the broken connection fails (the event is retried),
the next one reconnects; a step that held a claim or a transaction then fails instead of going on."""

from __future__ import annotations

import psycopg
import pytest

from shared.database import open_database

SCHEMA = "CREATE TABLE IF NOT EXISTS fact (k TEXT PRIMARY KEY);"


@pytest.fixture
def db(postgres):
    url = postgres.database()
    db = open_database(url, SCHEMA)
    yield db, url
    db.close()


def drop_connection(url: str, db) -> None:
    """What a server restart does to this one connection: the server ends its session."""
    pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_a_dropped_connection_fails_one_statement_and_the_next_reconnects(db):
    db, url = db
    db.execute("INSERT INTO fact VALUES (?)", ("before",))
    drop_connection(url, db)
    with pytest.raises(psycopg.OperationalError):
        db.execute("SELECT 1")
    db.execute("INSERT INTO fact VALUES (?)", ("after",))  # a new session, same schema
    with db.transaction():
        assert [r[0] for r in db.execute("SELECT k FROM fact ORDER BY k").fetchall()] == ["after", "before"]


def test_a_step_holding_a_claim_when_the_connection_drops_fails_and_the_claim_is_free(db, postgres):
    db, url = db
    assert db.claim("model:m")
    drop_connection(url, db)
    with pytest.raises(psycopg.OperationalError):
        db.execute("SELECT 1")  # the step meets the broken connection
    for _ in range(2):  # whoever asks (the holder, or another task on this store: the scheduler)
        with pytest.raises(psycopg.OperationalError, match="lost in the middle of a step"):
            db.execute("SELECT 1")  # never goes on as if the claim were still held
    other = open_database(url, SCHEMA)
    try:
        assert other.claim("model:m")  # the server dropped the lock with the session
    finally:
        other.close()
    db.release("model:m")
    assert db.claim("model:x")  # reconnected once the step gave up

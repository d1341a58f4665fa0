"""Where the tests' PostgreSQL comes from. In this order:

1. SIGNOFF_TEST_DATABASE_URL, when set: a server someone else runs (a postgresql:// URL whose user
   may create schemas in its database).
2. testcontainers, when a Docker engine answers (and SIGNOFF_TEST_POSTGRES is not `local`): the
   `postgres` image compose.yaml runs.
3. Otherwise the project's own throw-away cluster from Debian's binaries (deploy/postgres.sh, which
   installs them when missing), in a fresh folder on a free port, removed at the end of the session.

Each test gets a schema of its own (`database(name)`): the tests never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from tests.kafka_broker import docker_answers

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SH = ROOT / "deploy" / "postgres.sh"
IMAGE = "postgres:17"  # the major version compose.yaml runs


@dataclass(frozen=True)
class PostgresServer:
    url: str

    def database(self) -> str:
        """A new, empty schema; the URL returned connects with it as the search path."""
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        joiner = "&" if "?" in self.url else "?"
        return f"{self.url}{joiner}options={quote(f'-c search_path={schema}')}"


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    if url := os.environ.get("SIGNOFF_TEST_DATABASE_URL"):
        yield PostgresServer(url)
        return
    if os.environ.get("SIGNOFF_TEST_POSTGRES") != "local" and docker_answers():
        with _container() as url:
            yield PostgresServer(url)
        return
    # Not under pytest's tmp_path: run as root the server runs as `postgres`, which must reach its
    # folder (mkdtemp's is 700, opened to 711 by the script).
    folder = Path(tempfile.mkdtemp(prefix="signoff-postgres-"))
    env = {**os.environ, "POSTGRES_DATA_DIR": str(folder / "data")}
    env.pop("POSTGRES_PORT", None)  # a free port of its own
    try:
        os.chmod(folder, 0o711)
        subprocess.run(["bash", str(POSTGRES_SH), "up"], env=env, check=True, timeout=300)
        url = subprocess.run(["bash", str(POSTGRES_SH), "url"], env=env, check=True, capture_output=True,
                             text=True).stdout.strip()
        yield PostgresServer(url)
    finally:
        subprocess.run(["bash", str(POSTGRES_SH), "down"], env=env, check=False, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _container() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(IMAGE, driver=None) as container:
        yield container.get_connection_url()

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.acl import Table
from shared.admin import apply_acls, ensure_topics
from shared.kafka import KafkaAccess
from tests.kafka_broker import Cluster, kafka_broker
from tests.mlflow_server import MlflowServer, mlflow_server
from tests.postgres_server import PostgresServer, postgres_server
from tests.s3_server import S3Server, s3_server

# MLflow's usage telemetry, off in the tests (and in the servers they start, which inherit it): it
# would call out to the internet, and its background thread keeps a session id in os.environ that
# tests changing the environment (monkeypatch) race with.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--broker", choices=("memory", "kafka"), default="memory",
                     help="where the component tests run: FastStream's in-memory broker, or the real one")


@pytest.fixture(scope="session")
def kafka_broker_started() -> Iterator[Cluster]:
    """A real, secured Kafka broker (see tests/kafka_broker.py)."""
    with kafka_broker() as cluster:
        yield cluster


@pytest.fixture(scope="session")
async def kafka_cluster(kafka_broker_started: Cluster) -> Cluster:
    """The broker with Signoff's topics created and the ACLs of shared/acl.py applied (as the admin):
    `kafka_cluster.access(principal)` is the cluster as that principal."""
    cluster = kafka_broker_started
    await ensure_topics(cluster.admin, partitions=3)
    if cluster.secured:
        await apply_acls(cluster.admin, Table())
    return cluster


@pytest.fixture(scope="session")
async def kafka(kafka_cluster: Cluster) -> KafkaAccess:
    """The cluster as the admin: for tests that make topics, delete records or forge what a
    service would not accept from anyone else (a consumer's defence). A test about who may do what
    plays its principal with `kafka_cluster.access(...)`."""
    return kafka_cluster.admin


@pytest.fixture
def unique() -> str:
    """A short unique suffix, for model names and consumer groups private to one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (tests/postgres_server.py) for the whole session."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def state_db(request: pytest.FixtureRequest, tmp_path) -> Path | str:
    """Where a store test keeps its state, once per backend: an SQLite file, or a PostgreSQL URL
    with a schema of the test's own (the `postgres` server is started only when asked for)."""
    if request.param == "sqlite":
        return tmp_path / "state" / "state.db"
    return request.getfixturevalue("postgres").database()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3 API server (moto in server mode, tests/s3_server.py) for the whole session; each
    test makes its own bucket."""
    with s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def mlflow(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server (tests/mlflow_server.py: SQLite backend, artifact root on the
    `s3` server) for the whole session; each test registers models of its own names."""
    with mlflow_server(s3, tmp_path_factory.mktemp("mlflow")) as server:
        yield server

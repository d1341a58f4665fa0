from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.admin import ensure_topics
from tests.kafka_broker import kafka_broker


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--broker", choices=("memory", "kafka"), default="memory",
                     help="where the component tests run: FastStream's in-memory broker, or the real one")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka broker with Signoff's topics created (see tests/kafka_broker.py)."""
    with kafka_broker() as servers:
        yield servers


@pytest.fixture(scope="session")
async def kafka(kafka_bootstrap: str) -> str:
    await ensure_topics(kafka_bootstrap, partitions=3)
    return kafka_bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique suffix, for model names and consumer groups private to one test."""
    return uuid.uuid4().hex[:10]

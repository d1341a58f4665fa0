"""`signoff watch` finds where a submission starts from the audit index (one record read at the
offset the index gives) rather than by reading its topic backwards from the end, whose cost grows
with everything written since; the index only says where to look: the record there must carry
the id. Without an index, or one that does not hold the id, the backwards search answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from shared import topics
from shared.audit.index import Index
from signoff import client
from tests.unit import factories as f

WHEN = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SEARCHED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def record(subject: uuid.UUID, at: datetime) -> SimpleNamespace:
    return SimpleNamespace(headers=[("ce_subject", str(subject).encode())], timestamp=int(at.timestamp() * 1000))


@pytest.fixture
def broker(monkeypatch):
    """The reader, faked: what is at each offset, and whether the backwards search ran."""
    state = SimpleNamespace(at={}, searched=[])

    async def read_at(kafka, topic, partition, offset):
        return state.at.get((topic, partition, offset))

    async def find_newest(kafka, names, match):
        state.searched.append(names)
        return state.searched_record

    state.searched_record = None
    monkeypatch.setattr(client.reader, "read_at", read_at)
    monkeypatch.setattr(client.reader, "find_newest", find_newest)
    return state


def indexed(tmp_path, event, partition=1, offset=41):
    index = Index.open(tmp_path / "index.db")
    index.add_event(topics.MODEL_SUBMITTED, partition, offset, event, None, None)
    index.close()
    return tmp_path / "index.db"


async def test_an_indexed_submission_is_found_at_its_offset_without_searching(tmp_path, broker):
    event = f.submitted()
    path = indexed(tmp_path, event)
    broker.at[(topics.MODEL_SUBMITTED, 1, 41)] = record(event.submission_id, WHEN)
    assert await client.started_at(None, event.submission_id, path) == WHEN
    assert broker.searched == []


async def test_the_record_at_the_indexed_offset_must_carry_the_id(tmp_path, broker):
    event = f.submitted()
    path = indexed(tmp_path, event)
    broker.at[(topics.MODEL_SUBMITTED, 1, 41)] = record(uuid.uuid4(), WHEN)  # the topic was recreated
    broker.searched_record = record(event.submission_id, SEARCHED)
    assert await client.started_at(None, event.submission_id, path) == SEARCHED
    assert broker.searched == [client.STARTS]


async def test_without_an_index_or_the_id_in_it_the_topics_are_searched(tmp_path, broker):
    wanted = uuid.uuid4()
    broker.searched_record = record(wanted, SEARCHED)
    assert await client.started_at(None, wanted, None) == SEARCHED
    assert await client.started_at(None, wanted, indexed(tmp_path, f.submitted())) == SEARCHED
    assert await client.started_at(None, wanted, tmp_path / "missing.db") == SEARCHED
    assert not (tmp_path / "missing.db").exists()  # looking never creates an index
    broker.searched_record = None
    with pytest.raises(client.NotFound):
        await client.started_at(None, wanted, None)

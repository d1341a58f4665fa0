"""Upcasters chain an old event up to its type's current version; a gap in the chain, or an event
newer than the reader, is a clear error. Each event type has its own version."""

from __future__ import annotations

import json

import pytest

from shared import codec, topics
from shared.codec import BadEvent
from shared.events import EVENT_TYPES, ChecksPassed, ModelSubmitted
from shared.upcasting import UPCASTERS, UnknownSchemaVersion, upcast, upcaster
from tests.unit import factories as f

TYPE = ModelSubmitted.type
DECLARED = {cls: cls.class_version for cls in EVENT_TYPES}  # as the contract declares them
CONTRACT_UPCASTERS = dict(UPCASTERS)


@pytest.fixture
def bumped(monkeypatch):
    """ModelSubmitted at version 3 for one test; upcasters registered in it are removed after."""
    monkeypatch.setattr(ModelSubmitted, "class_version", 3)
    saved = dict(UPCASTERS)
    yield UPCASTERS
    UPCASTERS.clear()
    UPCASTERS.update(saved)


def v1_body() -> dict:
    """A model.submitted as version 1 wrote it (the current shape, as the bumps here are fictional)."""
    return json.loads(codec.encode(f.submitted(), "/test").value) | {"schema_version": 1}


def test_decode_chains_upcasters_from_an_older_version(bumped):
    current = v1_body()
    # A fictional history: v1 called it "author", v2 "owner", v3 (current here) "submitter".
    old = json.loads(json.dumps(current))
    old["submission"]["author"] = old["submission"].pop("submitter")
    seen = []

    @upcaster(TYPE, from_version=1)
    def _author_to_owner(data: dict) -> dict:
        seen.append(("1->2", data["schema_version"]))
        data["submission"]["owner"] = data["submission"].pop("author")
        return data

    @upcaster(TYPE, from_version=2)
    def _owner_to_submitter(data: dict) -> dict:
        seen.append(("2->3", data["schema_version"]))
        data["submission"]["submitter"] = data["submission"].pop("owner")
        return data

    raw = json.dumps(old).encode()
    event = codec.decode(topics.MODEL_SUBMITTED, raw)
    assert seen == [("1->2", 1), ("2->3", 2)]  # in order, each seeing the version it upgrades
    assert event.schema_version == 3
    assert event.submission.submitter == current["submission"]["submitter"]
    assert event.model_dump(mode="json") == current | {"schema_version": 3}
    # The same path when an event is validated inside something else (stored state).
    assert ModelSubmitted.model_validate_json(raw) == event
    assert json.loads(raw) == old  # what was read is not changed in place


def test_a_gap_in_the_chain_is_a_clear_error(bumped):
    @upcaster(TYPE, from_version=1)
    def _step(data: dict) -> dict:
        return data

    with pytest.raises(UnknownSchemaVersion, match="schema_version 2 of signoff.model.submitted has no upcaster to 3"):
        upcast(TYPE, 3, v1_body())
    with pytest.raises(BadEvent, match="has no upcaster"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(v1_body()).encode())


def test_upcasters_are_per_event_type(bumped):
    @upcaster(ChecksPassed.type, from_version=1)
    def _other(data: dict) -> dict:  # pragma: no cover - must not be called
        raise AssertionError("upcaster of another event type was applied")

    with pytest.raises(UnknownSchemaVersion, match="schema_version 1 of signoff.model.submitted has no upcaster"):
        upcast(TYPE, 3, v1_body())


def test_a_bump_of_one_type_leaves_the_others_at_their_version(bumped):
    """Only the bumped type needs an upcaster; every other type still decodes at version 1."""
    failed = f.deployment_failed()  # a type still at version 1
    decoded = codec.decode(topics.DEPLOYMENT_FAILED, codec.encode(failed, "/test").value)
    assert decoded == failed and decoded.schema_version == 1
    assert [cls for cls in EVENT_TYPES if cls.class_version != DECLARED[cls]] == [ModelSubmitted]


def test_newer_than_the_reader_is_refused():
    newer = "schema_version 2 is newer than this service understands for signoff.model.submitted"
    with pytest.raises(UnknownSchemaVersion, match=newer):
        upcast(TYPE, 1, v1_body() | {"schema_version": 2})


def test_current_version_passes_through_untouched():
    data = v1_body()
    assert upcast(TYPE, 1, data) is data


def test_events_built_in_code_are_at_their_type_version(bumped):
    assert f.submitted().schema_version == 3
    assert f.deployment_failed().schema_version == 1


def test_registry_is_clean_after_the_tests():
    assert UPCASTERS == CONTRACT_UPCASTERS  # the tests' upcasters are gone


def test_the_contract_has_one_upcaster_per_bump():
    """Every type above version 1 has an upcaster from each earlier version, and no other has one."""
    expected = {(cls.type, v) for cls in EVENT_TYPES for v in range(1, DECLARED[cls])}
    assert set(CONTRACT_UPCASTERS) == expected
    assert {cls.__name__ for cls in EVENT_TYPES if DECLARED[cls] > 1} == {
        "ReviewDecided", "DeploymentSucceeded",  # anchored_to
        "ChecksPassed", "ChecksFailed", "ReviewRequested",  # submitted_by
        "DeploymentRolledBack", "DeploymentRevoked"}  # sequence (and ReviewDecided's checks_event_id)

"""Upcasters chain an old event up to the current schema; a gap in the chain is a clear error."""

from __future__ import annotations

import json

import pytest

from shared import codec, topics, upcasting
from shared.codec import BadEvent
from shared.upcasting import UPCASTERS, UnknownSchemaVersion, upcast, upcaster
from tests.unit import factories as f

TYPE = "signoff.model.submitted"


@pytest.fixture
def registry():
    """Throwaway upcasters, removed after the test whatever it registered."""
    saved = dict(UPCASTERS)
    yield UPCASTERS
    UPCASTERS.clear()
    UPCASTERS.update(saved)


def v1_body() -> dict:
    return json.loads(codec.encode(f.submitted(), "/test").value)


def test_decode_chains_upcasters_from_an_older_version(registry):
    current = v1_body()
    # A fictional history: v-1 called it "author", v0 called it "owner"; v1 calls it "submitter".
    old = json.loads(json.dumps(current))
    old["schema_version"] = -1
    old["submission"]["author"] = old["submission"].pop("submitter")
    seen = []

    @upcaster(TYPE, from_version=-1)
    def _author_to_owner(data: dict) -> dict:
        seen.append(("-1->0", data["schema_version"]))
        data["submission"]["owner"] = data["submission"].pop("author")
        return data

    @upcaster(TYPE, from_version=0)
    def _owner_to_submitter(data: dict) -> dict:
        seen.append(("0->1", data["schema_version"]))
        data["submission"]["submitter"] = data["submission"].pop("owner")
        return data

    event = codec.decode(topics.MODEL_SUBMITTED, json.dumps(old).encode())
    assert seen == [("-1->0", -1), ("0->1", 0)]  # in order, each seeing the version it upgrades
    assert event.schema_version == 1
    assert event.submission.submitter == current["submission"]["submitter"]
    assert event.model_dump(mode="json") == current


def test_a_gap_in_the_chain_is_a_clear_error(registry):
    @upcaster(TYPE, from_version=-1)
    def _step(data: dict) -> dict:
        return data

    data = v1_body() | {"schema_version": -1}
    with pytest.raises(UnknownSchemaVersion, match="schema_version 0 of signoff.model.submitted has no upcaster to 1"):
        upcast(TYPE, data)
    with pytest.raises(BadEvent, match="has no upcaster"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(v1_body() | {"schema_version": -1}).encode())


def test_upcaster_is_per_event_type(registry):
    @upcaster("signoff.checks.passed", from_version=0)
    def _other(data: dict) -> dict:  # pragma: no cover - must not be called
        raise AssertionError("upcaster of another event type was applied")

    with pytest.raises(UnknownSchemaVersion, match="schema_version 0 of signoff.model.submitted"):
        upcast(TYPE, v1_body() | {"schema_version": 0})


def test_current_version_passes_through_untouched():
    data = v1_body()
    assert upcast(TYPE, dict(data)) == data


def test_unknown_event_type_is_refused():
    with pytest.raises(UnknownSchemaVersion, match="unknown event type 'signoff.nope'"):
        upcast("signoff.nope", {"schema_version": 1})


def test_registry_is_clean_after_the_tests():
    assert not any(version < 1 for (_, version) in upcasting.UPCASTERS)

"""Upcasters: bring an event written under an older version of its type up to the current one.

Each event class declares its own `class_version` (shared.events). When a type changes in a way
old readers or old data cannot follow, bump that class's version and register one upcaster from
the version before; upcasters chain, so a reader only ever sees the current version, and no other
event type is touched:

    @upcaster("signoff.model.submitted", from_version=1)
    def _v1_to_v2(data: dict) -> dict: ...

Every path that turns JSON into an event goes through `upcast`: events read from Kafka (codec),
and events nested in stored state (review-notifier reviews, deployer lifecycles and releases),
because `Event` upcasts in a pydantic before-validator wherever it is validated.

Pure: no imports beyond the standard library, so the event contract can use it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

Upcaster = Callable[[dict], dict]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownSchemaVersion(ValueError):
    pass


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register `func` as the step from `from_version` to `from_version + 1` of `event_type`."""
    def register(func: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = func
        return func

    return register


def version_of(data: dict) -> int:
    """The `schema_version` of an event's JSON object (raises when it is not an integer)."""
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UnknownSchemaVersion(f"schema_version must be an integer, got {version!r}")
    return version


def upcast(event_type: str, current: int, data: dict) -> dict:
    """`data` brought from its `schema_version` up to `current` (a copy when anything changed).
    Newer than `current` is an error: this reader is too old for the event, and says so."""
    version = version_of(data)
    if version > current:
        raise UnknownSchemaVersion(
            f"schema_version {version} is newer than this service understands for {event_type} "
            f"(it reads up to {current}); upgrade the consumer")
    if version < current:
        data = copy.deepcopy(data)  # the caller's object (a stored row, a decoded record) stays as read
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnknownSchemaVersion(
                f"schema_version {version} of {event_type} has no upcaster to {version + 1}")
        data = step(data)
        version += 1
        data["schema_version"] = version
    return data

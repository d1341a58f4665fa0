"""Upcasters: bring an event written under an older schema_version up to the current one.

Each upcaster takes the JSON object of one version and returns that of the next; they chain, so
a consumer only ever sees the current version. Register one when a schema changes:

    @upcaster("signoff.model.submitted", from_version=1)
    def _v1_to_v2(data: dict) -> dict: ...
"""

from __future__ import annotations

from collections.abc import Callable

from shared.events import BY_TYPE, SCHEMA_VERSION

Upcaster = Callable[[dict], dict]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownSchemaVersion(ValueError):
    pass


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(func: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = func
        return func

    return register


def upcast(event_type: str, data: dict, current: int = SCHEMA_VERSION) -> dict:
    """Apply upcasters until `data` is at the current schema version."""
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UnknownSchemaVersion(f"schema_version must be an integer, got {version!r}")
    if event_type not in BY_TYPE:
        raise UnknownSchemaVersion(f"unknown event type {event_type!r}")
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnknownSchemaVersion(
                f"schema_version {version} of {event_type} has no upcaster to {version + 1}"
            )
        data = step(data)
        version += 1
        data["schema_version"] = version
    if version > current:
        raise UnknownSchemaVersion(
            f"schema_version {version} is newer than this service understands ({current}); "
            "upgrade the consumer"
        )
    return data

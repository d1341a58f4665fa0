"""What every artifact source shares: the error it raises and the result it returns.

A module of its own so that `policy` and each source module can import it without importing the
registry in `shared.sources` (which imports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024  # bytes read, hashed and written at a time


class ArtifactError(ValueError):
    """The artifact cannot be used; the message says why and what to do.

    `transient` is True when the same fetch may well succeed if tried again (the registry refused the
    connection, reset it, or did not answer in time); False when trying again changes nothing (a URI
    outside the allowed places, an answer other than 200, an artifact over the size limit, ...).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Fetched:
    """The bytes of an artifact in a local file, with their digest and size."""

    path: Path
    sha256: str
    size: int
    temporary: bool  # `path` is a download the caller owns: call `cleanup()` when done

    def cleanup(self) -> None:
        """Delete a download; an artifact read in place (`temporary=False`) is never touched."""
        if self.temporary:
            self.path.unlink(missing_ok=True)

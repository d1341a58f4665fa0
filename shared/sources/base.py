"""What every artifact source shares: the error it raises and the result it returns.

A module of its own so that `policy` and each source module can import it without importing the
registry in `shared.sources` (which imports them).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

CHUNK = 1024 * 1024  # bytes read, hashed and written at a time
# A file smaller than this is hashed on the event loop: handing it to a worker thread (and the GIL
# back and forth) costs more than hashing it (a tenth of the validator's CPU per small submission in
# bench.run's profile). Capped there: a file that grows past it meanwhile goes to a thread.
INLINE_BYTES = 256 * 1024


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
    """The bytes of an artifact in a local file, or a local folder for a folder artifact, with
    their digest (a folder's: `shared.sources.tree`), total size and count of files."""

    path: Path
    sha256: str
    size: int
    temporary: bool  # `path` is a download the caller owns: call `cleanup()` when done
    files: int = 1
    folder: bool = False

    def cleanup(self) -> None:
        """Delete a download; an artifact read in place (`temporary=False`) is never touched."""
        if not self.temporary:
            return
        if self.folder:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)


class Digested(NamedTuple):
    """What `ArtifactSource.digest` measures: the digest (a file's sha256, or a folder's tree
    digest), the total size in bytes, and the number of files (1 for a single file)."""

    sha256: str
    size: int
    files: int
    folder: bool = False  # a folder artifact, even one holding a single file

"""The `file` scheme: an artifact read in place under an allowed root, hashed off the event loop.

Also the hashing and verified copy the deployer's model store uses on local files.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from shared.sources.base import CHUNK, ArtifactError, Fetched
from shared.sources.policy import check_links, resolve, too_big

if TYPE_CHECKING:
    from shared.sources import ArtifactSource


async def fetch(uri: str, source: ArtifactSource, max_bytes: int) -> Fetched:
    """The file at `uri` if it lies under `source.roots` (see `policy.resolve`) and is its only
    name there (see `policy.check_links`); never copied."""
    path = resolve(uri, source.roots)
    digest, size = await asyncio.to_thread(_hash_capped, path, uri, max_bytes, source.allow_hard_links)
    return Fetched(path, digest, size, temporary=False)


def _hash_capped(path: Path, uri: str, max_bytes: int,
                 allow_hard_links: bool = False) -> tuple[str, int]:
    """Opened once, without following a symbolic link swapped in since `resolve`; the checks
    (a regular file, its link count, its size) are made on that open file, and the bytes hashed
    are read from it. Counts the bytes actually read, so a file growing after the size check is
    still capped."""
    digest, size = hashlib.sha256(), 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ArtifactError(f"artifact_uri {uri!r} is not a regular file; point it at the artifact itself")
            check_links(uri, info.st_nlink, allow_hard_links)
            if (stated := info.st_size) > max_bytes:
                raise too_big(uri, f"{stated} bytes", max_bytes)
            while chunk := f.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise too_big(uri, f"more than {max_bytes} bytes (it grew while read)", max_bytes)
                digest.update(chunk)
    except OSError as exc:
        raise ArtifactError(f"artifact_uri {uri!r} cannot be read: {exc.strerror}; "
                            "check that the file exists and the service may read it") from None
    return digest.hexdigest(), size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def sha256_of(path: Path) -> str:
    """Stream the file through sha256 in a worker thread; the event loop keeps serving."""
    return await asyncio.to_thread(sha256_file, path)


def copy_verified(source: Path, dest: Path, expected_sha256: str) -> None:
    """Copy `source` to `dest`, hashing the bytes as they are written; fsync, and raise if the
    copy is not exactly the expected artifact (so what lands is what was approved)."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "xb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != expected_sha256:
        raise ArtifactError(
            f"artifact digest is {digest.hexdigest()}, approved digest is {expected_sha256}: "
            "the artifact changed since it was checked"
        )

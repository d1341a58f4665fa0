"""Reading artifacts safely: only under allowed roots, streamed, hashed off the event loop.

Used by the validator (to check the digest) and the deployer (to copy exactly the approved bytes).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

CHUNK = 1024 * 1024


class ArtifactError(ValueError):
    """The artifact cannot be used; the message says why and what to do."""


def resolve(uri: str, allowed_roots: tuple[Path, ...]) -> Path:
    """The local path of a `file://` artifact, refusing anything outside the allowed roots
    (after resolving `..` and symbolic links)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ArtifactError(f"artifact_uri {uri!r}: only file:// URIs are supported here")
    if parsed.netloc not in ("", "localhost"):
        raise ArtifactError(f"artifact_uri {uri!r}: file URIs must be local (file:///path)")
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise ArtifactError(f"artifact_uri {uri!r}: the path must be absolute")
    real = Path(os.path.realpath(path))
    for root in allowed_roots:
        if real.is_relative_to(Path(os.path.realpath(root))):
            break
    else:
        roots = ", ".join(str(r) for r in allowed_roots) or "(none configured)"
        raise ArtifactError(f"artifact_uri {uri!r} is outside the allowed roots: {roots}")
    if not real.is_file():
        raise ArtifactError(f"artifact_uri {uri!r}: no such file")
    return real


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
